"""The alignment family's controlled task, outside Lightning: its true reward and preference labels."""
