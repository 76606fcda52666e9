#!/usr/bin/env bash
# The controlled sentiment task's reward–KL frontier in one command, from whatever the data directory holds
# (empty: the reference policy and the pairs are made first): DPO at β ∈ {0.05, 0.1, 0.3}, PPO on a bag-of-words
# reward model fitted to the same pairs at β ∈ {0.03, 0.1, 0.3}, and the PPO-GT oracle, 3 seeds each, every
# validation a point of its method's curve; then compare.py's frontier.png, frontier.md and frontier_summary.md
# (README at aeac04c, Alignment: "The frontier in one command").
#
#   bash scripts/align_frontier.sh [OUT_DIR] [hydra overrides for every run, e.g. paths.data_dir=/tmp/empty]
#
# Two lanes of one thread each, for 2 cores, about equally long: DPO at DPO_BETAS_1 in one; DPO at DPO_BETAS_2,
# then PPO at PPO_BETAS, then PPO-GT in the other. Settings (environment): SEEDS (a comma list, default 0,1,2);
# DPO_BETAS_1 (0.1,0.3), DPO_BETAS_2 (0.05), PPO_BETAS (0.03,0.1,0.3); N_PROMPTS (16384), LR (DPO's and PPO's
# learning rate, 3e-5) and PPO_BATCHES (PPO's rollout batches, 160); the runs go under FRONTIER_RUNS
# (outputs/align_frontier/<time>).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/align_frontier}
shift $(( $# > 0 ? 1 : 0 ))
seeds=${SEEDS:-0,1,2}
sweeps=${FRONTIER_RUNS:-outputs/align_frontier/$(date +%Y-%m-%d_%H-%M-%S)}
start=$SECONDS

lr=${LR:-3e-5}
# The task: 16,384 prompts × 4 completions of 55 tokens, every pair labelled (~46,000 kept, ~41,700 to train on).
task=(data.samples_per_prompt=4 data.completion_length=55 "data.n_prompts=${N_PROMPTS:-16384}")
# One pass over the training pairs (DPO) or 160 rollout batches of 32 prompts (PPO), at lr 3e-5 (README at aeac04c: the
# rate at which both methods' paths lay highest; the oracle at its measured 1e-4, β = 0.01, which spans KL 0–30);
# validation on 64 batches of held-out pairs.
runs=(experiment=align_frontier "${task[@]}" trainer.max_epochs=1 logger=csv "seed=$seeds" ++trainer.limit_val_batches=64)
ppo=("++trainer.limit_train_batches=${PPO_BATCHES:-160}" ++trainer.val_check_interval=16)

echo "[frontier] reference policy and pairs"
OMP_NUM_THREADS=2 python scripts/preference_signal.py "${task[@]}" "$@"

# The command line names each lane's method (model and its loss or reward model), so it runs instead of the
# frontier's members; β is the method's KL coefficient: DPO's model.beta, PPO's model.kl_coef.
dpo=(model=dpo model.loss=dpo ++trainer.val_check_interval=260 "model.optimizer.lr=$lr")
ppo+=(model=ppo data.batch_size=32)

echo "[frontier] DPO | DPO, PPO, PPO-GT: one thread each; runs under $sweeps"
mkdir -p "$(dirname "$sweeps")"
OMP_NUM_THREADS=1 python train.py -m "${runs[@]}" "${dpo[@]}" "model.beta=${DPO_BETAS_1:-0.1,0.3}" \
    hydra.sweep.dir="$sweeps/dpo_1" "$@" > "$sweeps.lane1.log" 2>&1 &
lane1=$!
( OMP_NUM_THREADS=1 python train.py -m "${runs[@]}" "${dpo[@]}" "model.beta=${DPO_BETAS_2:-0.05}" \
      hydra.sweep.dir="$sweeps/dpo_2" "$@" \
  && OMP_NUM_THREADS=1 python train.py -m "${runs[@]}" "${ppo[@]}" model.reward_model=bag_of_words \
      "model.kl_coef=${PPO_BETAS:-0.03,0.1,0.3}" "model.optimizer.lr=$lr" hydra.sweep.dir="$sweeps/ppo" "$@" \
  && OMP_NUM_THREADS=1 python train.py -m "${runs[@]}" "${ppo[@]}" model.reward_model=null model.kl_coef=0.01 \
      model.optimizer.lr=1e-4 hydra.sweep.dir="$sweeps/ppo_gt" "$@" ) > "$sweeps.lane2.log" 2>&1 &
lane2=$!
status=0
wait $lane1 || { status=$?; echo "[frontier] lane 1 failed: $sweeps.lane1.log" >&2; }
wait $lane2 || { status=$?; echo "[frontier] lane 2 failed: $sweeps.lane2.log" >&2; }
[[ $status == 0 ]] || exit $status

python compare.py "$sweeps/dpo_1" "$sweeps/dpo_2" "$sweeps/ppo" "$sweeps/ppo_gt" --out "$out" \
    --frontier-points every-validation --frontier-at-kl 0.5 1 2 3 4 5 6 8 10 12 14 16 18 20 22 24 --ignore-keys trainer
echo "[frontier] $((SECONDS - start)) s from start to $out"
