#!/usr/bin/env bash
# The text zoo, step by step, exactly as trained here (2 CPU cores, no GPU). Every step resumes from its run
# folder when rerun; MINUTES caps each training step, so a run can stop and a later one go on.
# Usage: bash scripts/train_text_zoo.sh [corpus|target|small|draft|pard|cod|export|heads|bench|bench-small]...
#        bash scripts/train_text_zoo.sh [gemma-data|gemma-pard|gemma-pard-kd|gemma-kd-compare|gemma-export|gemma-heads|gemma-bench]...   (Gemma 3 270M)
# small: the second, smaller target (text-12m) for target independence; cod: the COD against no-COD comparison.
# gemma-pard-kd: the zoo draft trained on with Gemma as teacher (runs/gemma-pard-kd; export with RUN=runs/gemma-pard-kd);
# gemma-kd-compare benches it against the shipped draft
# gemma-bench: GEMMA_HEADS="folder ..." adds a row per heads folder trained for Gemma (gemma-heads writes runs/gemma-hydra)
# heads: KINDS="medusa hydra ..." picks kinds (default all five, koala-noadv being KOALA without its adversarial loss)
set -euo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/specgen
D=data/text
MIX="$D/train.code.bin:1,$D/train.prose.bin:1"
HELD="$D/heldout.code.bin,$D/heldout.prose.bin"
TOK=models/zoo/text-tokenizer
MINUTES=${MINUTES:-1000000}
for step in "$@"; do
  case $step in
    corpus)
      .venv/bin/python -m modalities.text.corpus --out $D
      [ -f $TOK/tokenizer.json ] || .venv/bin/python -m modalities.text.tokenizer --corpus $D --out $TOK --vocab 8192
      .venv/bin/python -m modalities.text.tokenizer --corpus $D --tokenizer $TOK --encode ;;
    target)  # on a fresh machine (no runs/text-30m) it continues from the zoo export's step
      INIT=(); [ -d runs/text-30m/checkpoint ] || INIT=(--init models/zoo/text-30m)
      $S train-lm "${INIT[@]}" --preset text-30m --train $MIX --heldout $HELD --tokenizer $TOK --out runs/text-30m \
        --steps 5000 --batch 8 --seq 512 --context 512 --eval-every 200 --eval-windows 32 --max-minutes "$MINUTES" ;;
    small)
      $S train-lm --preset text-12m --train $MIX --heldout $HELD --tokenizer $TOK --out runs/text-12m \
        --steps 3000 --batch 8 --seq 512 --context 512 --eval-every 200 --eval-windows 32 --max-minutes "$MINUTES" ;;
    draft)
      $S train-lm --preset draft-5m --train $MIX --heldout $HELD --tokenizer $TOK --out runs/text-draft-5m \
        --steps 1200 --batch 8 --seq 512 --context 512 --eval-every 200 --eval-windows 32 --max-minutes "$MINUTES" ;;
    pard)
      $S train-pard --init models/zoo/text-draft-5m --train $MIX --heldout $HELD --out runs/text-pard-5m \
        --k 8 --retention 0.7 --floor 0.2 --steps 800 --batch 8 --seq 256 --eval-every 200 --max-minutes "$MINUTES" ;;
    cod)  # COD against no COD from the same AR draft, fp32: cost per step and epoch, then acceptance at equal
          # steps (60) and equal wall time (no COD 60 steps, COD as many as fit in as long); not shipped
      .venv/bin/python -m modalities.text.cod_bench --init models/zoo/text-draft-5m --steps 10 --mixed-precision no \
        --out bench_out
      for run in "nocod-60 1 1 60 18" "cod-60 0.7 0.2 60 18" "cod-280 0.7 0.2 280 16"; do
        set -- $run
        $S train-pard --init models/zoo/text-draft-5m --train $MIX --heldout $HELD --out runs/cod-cmp/$1 --k 8 \
          --retention $2 --floor $3 --steps $4 --warmup 10 --batch 8 --seq 256 --eval-every $4 --max-minutes $5 \
          --mixed-precision no
        $S train-pard --init models/zoo/text-draft-5m --train $MIX --heldout $HELD --out runs/cod-cmp/$1 \
          --export runs/cod-cmp/$1/export
        $S bench text --model models/zoo/text-30m --pard-draft runs/cod-cmp/$1/export --methods pard --ks 8 \
          --prompts 6 --max-new-tokens 64 --temperatures 0 --no-parity --dtype float32 --out bench_out/cod/$1
      done
      $S bench text --model models/zoo/text-30m --pard-draft models/zoo/text-pard-5m --methods pard --ks 8 \
        --prompts 6 --max-new-tokens 64 --temperatures 0 --no-parity --dtype float32 --out bench_out/cod-shipped
      .venv/bin/python -m modalities.text.cod_compare --runs runs/cod-cmp --bench bench_out/cod \
        --extra "shipped text-pard-5m (COD, bf16)=models/zoo/text-pard-5m=bench_out/cod-shipped" --out docs/bench ;;
    export)
      [ -d runs/text-30m/checkpoint ] && $S train-lm --preset text-30m --train $MIX --heldout $HELD --tokenizer $TOK \
        --out runs/text-30m --export models/zoo/text-30m
      [ -d runs/text-12m/checkpoint ] && $S train-lm --preset text-12m --train $MIX --heldout $HELD --tokenizer $TOK \
        --out runs/text-12m --export models/zoo/text-12m
      [ -d runs/text-draft-5m/checkpoint ] && $S train-lm --preset draft-5m --train $MIX --heldout $HELD \
        --tokenizer $TOK --out runs/text-draft-5m --export models/zoo/text-draft-5m
      [ -d runs/text-pard-5m/checkpoint ] && $S train-pard --init models/zoo/text-draft-5m --train $MIX \
        --heldout $HELD --out runs/text-pard-5m --export models/zoo/text-pard-5m
      true ;;
    heads)  # one set of greedy self-distillation continuations, shared by every kind
      for kind in ${KINDS:-medusa hydra koala koala-noadv redrafter}; do
        R=runs/text-30m-heads/$kind; mkdir -p $R
        [ -f $R/selfdistill.pt ] || [ ! -f runs/text-30m-heads/medusa/selfdistill.pt ] \
          || cp runs/text-30m-heads/medusa/selfdistill.pt $R/
        EXTRA=(--kind "${kind%-noadv}"); [ "$kind" = koala-noadv ] && EXTRA+=(--adversarial-weight 0)
        $S train-heads --target models/zoo/text-30m "${EXTRA[@]}" --data $MIX --out $R --temperature 0 \
          --sequences 512 --new-tokens 128 --steps ${HEAD_STEPS:-600} --max-minutes "$MINUTES"
        mkdir -p models/zoo/text-30m-heads/$kind && cp $R/heads.safetensors $R/heads.json models/zoo/text-30m-heads/$kind/
      done ;;
    bench)
      HEADS=(); for h in models/zoo/text-30m-heads/*/; do [ -f "$h/heads.json" ] && HEADS+=("${h%/}"); done
      $S bench text --model models/zoo/text-30m --draft models/zoo/text-draft-5m --pard-draft models/zoo/text-pard-5m \
        --prompts 6 --max-new-tokens 128 --dtype bfloat16 --out bench_out ${HEADS:+--heads "${HEADS[@]}"} ;;
    bench-small)  # the same PARD draft on the smaller target
      $S bench text --model models/zoo/text-12m --draft models/zoo/text-draft-5m --pard-draft models/zoo/text-pard-5m \
        --prompts 6 --max-new-tokens 128 --dtype bfloat16 --out bench_out/text-12m ;;
    gemma-data)  # the corpus in Gemma's ids, Gemma's own continuations (GEN_MINUTES), the trimmed vocabulary
      [ -f data/text/train.jsonl ] || .venv/bin/python -m modalities.text.corpus --out $D
      G=data/gemma
      [ -f $G/train.code.u32 ] || .venv/bin/python -m modalities.text.distill encode --out $G
      .venv/bin/python -m modalities.text.distill generate --out $G --minutes "${GEN_MINUTES:-45}"
      FROM=(); [ -f models/zoo/text-gemma-pard/config.json ] && FROM=(--from-draft models/zoo/text-gemma-pard)
      .venv/bin/python -m modalities.text.distill vocab --out $G --size 24576 "${FROM[@]}"  # the shipped map if any
      .venv/bin/python -m modalities.text.distill export --out $G
      [ -d runs/gemma-pard-init ] || .venv/bin/python -m modalities.text.distill init --out $G --dest runs/gemma-pard-init ;;
    gemma-pard)
      G=data/gemma/draft
      $S train-pard --init runs/gemma-pard-init --out runs/gemma-pard \
        --train $G/train.code.bin:1,$G/train.prose.bin:1,$G/generated.code.bin:0.3,$G/generated.prose.bin:0.2 \
        --heldout $G/heldout.code.bin,$G/heldout.prose.bin --k 8 --retention 0.7 --floor 0.2 --steps ${PARD_STEPS:-750} \
        --batch 8 --seq 256 --lr 1e-3 --warmup 100 --eval-every 250 --max-minutes "$MINUTES" ;;
    gemma-pard-kd)  # go on from the zoo draft, distilling Gemma's own next-token probabilities (train-pard --teacher)
      G=data/gemma
      GEMMA=$(.venv/bin/python -c 'from modalities.text.gemma import gemma_folder; print(gemma_folder())')
      $S train-pard --init models/zoo/text-gemma-pard --teacher "$GEMMA" --out runs/gemma-pard-kd \
        --train $G/train.code.u32:1,$G/train.prose.u32:1,$G/generated.code.u32:0.5,$G/generated.prose.u32:0.5 \
        --heldout $G/heldout.code.u32,$G/heldout.prose.u32 --k 8 --retention 0.7 --floor 0.2 --distill 0.8 \
        --steps ${PARD_STEPS:-600} --batch 8 --seq 256 --lr 5e-4 --warmup 30 --eval-every 100 \
        --max-minutes "${MINUTES:-85}" ;;
    gemma-kd-compare)  # the distilled draft (gemma-pard-kd) against the shipped one: pard K=8 greedy, one run each
      $S train-pard --init models/zoo/text-gemma-pard --train data/gemma/draft/train.code.bin \
        --heldout data/gemma/draft/heldout.code.bin --out runs/gemma-pard-kd --export runs/gemma-pard-kd-export
      for d in shipped:models/zoo/text-gemma-pard distilled:runs/gemma-pard-kd-export; do
        $S bench text --model gemma-3-270m --pard-draft ${d#*:} --draft "" --corpus data/gemma \
          --domains humaneval prose --prompts 6 --max-new-tokens 128 --temperatures 0 --ks 8 --methods ar pard \
          --no-parity --dtype bfloat16 --out bench_out/gemma-kd-${d%%:*}
      done ;;
    gemma-export)
      G=data/gemma/draft
      $S train-pard --init models/zoo/text-gemma-pard --train $G/train.code.bin --heldout $G/heldout.code.bin \
        --out "${RUN:-runs/gemma-pard}" --export models/zoo/text-gemma-pard ;;
    gemma-heads)  # Hydra++ heads over the draft's trimmed vocabulary, from Gemma's continuations (gemma-data)
      GEMMA=$(.venv/bin/python -c 'from modalities.text.gemma import gemma_folder; print(gemma_folder())')
      $S train-heads --target "$GEMMA" --kind hydra --data data/gemma/draft/train.code.bin:1 \
        --selfdistill data/gemma/generated.code.u32,data/gemma/generated.prose.u32 \
        --draft-vocab models/zoo/text-gemma-pard --out runs/gemma-hydra --sequences 448 --heldout-sequences 32 \
        --steps 600 --batch 8 --lr 1e-3 --warmup 30 --eval-every 50 --max-minutes "${HEADS_MINUTES:-40}" \
        --cache-gb 12 --rules sample ;;
    gemma-bench)
      # the PARD draft is also the AR draft (draft_model, transformers' assisted generation): same draft budget
      $S bench text --model gemma-3-270m --pard-draft models/zoo/text-gemma-pard --draft models/zoo/text-gemma-pard \
        --corpus data/gemma --domains humaneval prose --prompts 6 --max-new-tokens 128 --temperatures 0 1 \
        --batch 4 --dtype bfloat16 --parity-prompts 2 --parity-tokens 32 --out bench_out/gemma \
        ${GEMMA_HEADS:+--heads $GEMMA_HEADS} ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
