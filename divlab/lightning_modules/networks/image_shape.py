"""The shape check every image network (`networks=conv`) makes first, pointing flat data to `networks=mlp`."""


def check_image_shape(shape, network: str, divisor: int = 4) -> tuple[int, int, int]:
    """`shape` as (C, H, W) when it is an image shape whose H and W `divisor` divides; otherwise a ValueError naming
    the network, the shape and the fix (2-D points and other flat data take `networks=mlp`)."""
    shape = tuple(shape)
    if len(shape) != 3 or any(side <= 0 or side % divisor for side in shape[1:]):
        sides = f" with H and W divisible by {divisor}" if divisor > 1 else ""
        fix = ("for 2-D points or other flat data use networks=mlp" if len(shape) != 3
               else "use image data of such a size, or networks=mlp")
        raise ValueError(f"{network} (networks=conv) needs image data of shape (C, H, W){sides}, got {shape}; {fix}")
    return shape
