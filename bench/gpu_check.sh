#!/usr/bin/env bash
# The GPU path, measured: the step-time pairs (cvkit vs torchvision: RetinaNet and Faster
# R-CNN R50-FPN at 512 px, FCN R50-D8 and FCN-8s at 384 px, 2 images a step) on CUDA, eager
# fp32, then bf16 autocast with channels-last weights, then the same with torch.compile; each
# setting applies to both models alike. Writes a Markdown table (default
# bench/results/gpu_check.md) and prints it.
#
#   bash bench/gpu_check.sh [OUT.md]
#   DEVICE=cpu SIZE_DET=64 SIZE_SEG=48 STEPS=1 SETTINGS="--amp none" bash bench/gpu_check.sh
#
# Run it whenever a GPU machine is lent (about 5-10 minutes on one recent GPU, most of it
# torch.compile); record the table in bench/README.md with the date and the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEVICE=${DEVICE:-cuda}
OUT=${1:-bench/results/gpu_check.md}
STEPS=${STEPS:-10}
SIZE_DET=${SIZE_DET:-512}
SIZE_SEG=${SIZE_SEG:-384}
THREADS=${THREADS:-8}
IFS=';' read -r -a SETTING_LIST <<< "${SETTINGS:---amp none;--amp bf16 --channels-last;--amp bf16 --channels-last --compile}"

gpu=$("$PY" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")')
mkdir -p "$(dirname "$OUT")"
{
  echo "# bench/gpu_check.sh, $(date -u +%Y-%m-%d), $gpu, device $DEVICE, torch $("$PY" -c 'import torch; print(torch.__version__)')"
  echo
  echo "| setting | pair | cvkit s/step | torchvision s/step | cvkit / torchvision |"
  echo "| --- | --- | --- | --- | --- |"
} > "$OUT"
for setting in "${SETTING_LIST[@]}"; do
  for bench in "detector_step_time.py --model all --size $SIZE_DET" "segmenter_step_time.py --size $SIZE_SEG"; do
    # shellcheck disable=SC2086  # the settings are several words on purpose
    log=$("$PY" bench/$bench --device "$DEVICE" $setting --steps "$STEPS" --rounds 2 --threads "$THREADS")
    # lines "NAME       cvkit: 0.123 s/step ...", "NAME torchvision: ..." and "NAME: cvkit / torchvision = R"
    echo "$log" | awk -v setting="$setting" '
      / cvkit: .* s\/step \(median/       { cv[$1] = $3 }
      / torchvision: .* s\/step \(median/ { tv[$1] = $3 }
      /: cvkit \/ torchvision = /          { name = $1; sub(":", "", name); order[++n] = name; ratio[name] = $6 }
      END { for (i = 1; i <= n; i++) { k = order[i];
            printf "| %s | %s | %s | %s | %s |\n", setting, k, cv[k], tv[k], ratio[k] } }' >> "$OUT"
  done
done
cat "$OUT"
