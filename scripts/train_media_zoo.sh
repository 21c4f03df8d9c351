#!/usr/bin/env bash
# The speech, image and rap zoo models, step by step, exactly as trained here (2 CPU cores, no GPU). Training
# steps resume from their run folders; MINUTES caps each, so a run can stop and a later one go on.
#   bash scripts/train_media_zoo.sh speech-aligned data tokens lm export temperature heads meldecoder bench
#                                             (speech-tts: the Piper voice alone, its alignment interleaved, decoded
#                                             by the learned token-to-mel decoder and the neural vocoder that
#                                             `speech vocoder` trains)
#   bash scripts/train_media_zoo.sh speech data tokens lm export flow vocoder heads prompt bench   (the voice-prompted
#                                             38-voice model, not shipped: models/zoo/speech-prompted; its tokenizer
#                                             and flow decoder are the rap model's, its vocoder speech-tts's)
#   bash scripts/train_media_zoo.sh image  vq sequences lm export heads tv treesize bench
#   bash scripts/train_media_zoo.sh rap    data sequences lm export aligned heads calibrate prompt bench   (after
#                                             speech: it takes that model's tokenizer and flow decoder, and
#                                             speech-tts's vocoder through shared.json; `aligned` moves the LM
#                                             on to the stream with each word's phonemes on its slot)
# The speech and rap data builders need the text corpus (bash scripts/train_text_zoo.sh corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/specgen
P=.venv/bin/python
M=${1:?"name a modality: speech, image or rap"}; shift
D=data/$M
MINUTES=${MINUTES:-1000000}
HEAD_ARGS=()  # more train-heads options for one modality (they come last, so they win over the common ones)
case $M in  # zoo folder, vocabulary class, LM shape (steps batch seq), heads (kind, new tokens, sampling temperature[, CPU tree size])
  speech) Z=models/zoo/speech-prompted; VOCAB=modalities.speech.vocab:SpeechVocab; LM=(${LM_STEPS:-750} 8 1024)
          HEADS=(hydra 200 1.0 6)  # 6 Hydra++ heads as a 6-node chain; the shipped set grew from 4:
          HEAD_ARGS=(--num-heads 6 --mixed-precision no ${HEAD_INIT:+--init $HEAD_INIT}) ;;  # HEAD_INIT=old heads
  speech-aligned) Z=models/zoo/speech-tts; VOCAB=modalities.speech.vocab:SpeechVocab
          LM=(${LM_STEPS:-3000} 8 1024); HEADS=(hydra 200 1.0 6); HEAD_ARGS=(--num-heads 6 --mixed-precision no) ;;
  image)  Z=models/zoo/image-scenes; VOCAB=modalities.image.vocab:ImageVocab;   LM=(${LM_STEPS:-1000} 16 320)
          HEADS=(hawk 256 1.0 3)  # Hydra++ rows, distilled towards CFG-3 logits; 1,5,3 is <s> <null> <sep>
          HEAD_ARGS=(--horizontal hydra --sequences 512 --gen-batch 32 --steps ${HEAD_STEPS:-1500} --cfg-scale 3
                     --uncond-prompt 1,5,3)
          GUIDED=(--data $D/train.pt --new-tokens 256 --gen-batch 32 --cfg-scale 3 --uncond-prompt 1,5,3
                  --rules sample drawn)  # the `tv` steps' rasters and calibration
          TV=(--target $Z/lm --kind hawk --horizontal hydra "${GUIDED[@]}" --temperature 1.0 --lr 3e-4 --warmup 20
              --loss tv --max-minutes "$MINUTES") ;;
  rap)    Z=models/zoo/rap;          VOCAB=modalities.rap.vocab:RapVocab;       LM=(${LM_STEPS:-500} 4 2048)
          HEADS=(hydra 256 1.0)  # 6 Hydra++ heads (the Medusa set ships as heads-medusa/), calibrated for
          HEAD_ARGS=(--num-heads 6 --mixed-precision no --rules sample tolerance:1 tolerance:3 tolerance:5  # these rules
                     ${HEAD_INIT:+--init $HEAD_INIT}) ;;  # HEAD_INIT=old heads
  *) echo "unknown modality $M: speech, image or rap"; exit 2 ;;
esac
vocab_size() { $P -c "import importlib as i;m,c='$VOCAB'.split(':');print(len(getattr(i.import_module(m),c).load('$Z/lm')))"; }
for step in "$@"; do
  case $M:$step in
    speech:data) $P -m modalities.speech.data --corpus data/text --out $D --train 3000 --heldout 120 ;;
    speech:tokens)
      $P -m modalities.speech.train tokenizer --data $D --out $Z --size 512 --clips 600
      $P -m modalities.speech.train sequences --data $D --out $Z ;;
    speech:flow) $P -m modalities.speech.train flow --data $D --out $Z --steps ${FLOW_STEPS:-3000} --batch 16 \
                   --max-minutes "$MINUTES" ;;
    speech:vocoder) $P -m modalities.speech.train vocoder --data $D --out models/zoo/speech-tts --max-frames 64 --batch 16 --lr 5e-4 \
                      --steps ${VOCODER_STEPS:-20000} --max-minutes "$MINUTES" ;;  # resumes from $Z/vocoder.run.pt
    speech:prompt) $P -m modalities.speech.train prompt --data $D --out $Z ;;
    speech-aligned:data)  # Piper alone at three paces, each clip with Piper's exact phoneme alignment
      $P -m modalities.speech.data --aligned --corpus data/text --out $D --train ${CLIPS:-8000} --heldout 120 ;;
    speech-aligned:tokens)  # TOKENS: the k-means size (modalities.speech.ceiling --fit-sizes compares them)
      $P -m modalities.speech.train tokenizer --data $D --out $Z --size ${TOKENS:-512} --clips 1500
      $P -m modalities.speech.train sequences --data $D --out $Z --aligned --prompt-seconds 0 ;;
    speech-aligned:temperature)  # the sampling temperature with the lowest ar WER on 8 training sentences, stored
      for T in 0.3 0.5 0.7 1.0; do  # in speech_vocab.json as the model's default
        $S bench speech --model $Z --data $D --split train --sentences 8 --tolerances --no-exact --temperature $T \
          --out bench_out/$M-train-t$T
      done
      $P -c "
import json
from modalities.speech.vocab import SpeechVocab
wer = {t: next(r['wer'] for r in json.load(open(f'bench_out/$M-train-t{t}/speech.json'))['rows'] if r['method'] == 'ar')
       for t in ('0.3', '0.5', '0.7', '1.0')}
v = SpeechVocab.load('$Z/lm'); v.temperature = float(min(wer, key=wer.get)); v.save('$Z/lm'); print(wer, v.temperature)" ;;
    speech-aligned:meldecoder)  # the learned token-to-mel decoder (the pipeline's default over the centroids)
      $P -m modalities.speech.train meldecoder --data $D --out $Z --steps ${MELDEC_STEPS:-6000} --batch 16 \
        --max-frames 200 --lr 1e-3 --max-minutes "$MINUTES" ;;
    speech-aligned:flow)  # optional: a flow decoder over the one-voice tokens (the pipeline then uses it)
      $P -m modalities.speech.train flow --data $D --out $Z --steps ${FLOW_STEPS:-3000} --batch 16 \
        --pad --max-frames 400 --max-minutes "$MINUTES" ;;
    image:vq)  # scenes are drawn on the fly; the run checkpoint $Z/vq.run.pt is not shipped
      $P -m modalities.image.train vq --out $Z --steps ${VQ_STEPS:-800} --batch 16 --max-minutes "$MINUTES" ;;
    image:sequences) $P -m modalities.image.train sequences --out $Z --data $D --scenes 20000 --heldout 400 ;;
    rap:data) $P -m modalities.rap.data --corpus data/text --out $D --train 400 --heldout 24 ;;
    rap:sequences)
      mkdir -p $Z && rm -rf $Z/vocoder  # the voice-prompted speech model's tokenizer and flow decoder, copied
      for part in tokenizer flow; do [ -d $Z/$part ] || cp -r models/zoo/speech-prompted/$part $Z/; done
      printf '{"vocoder": "../speech-tts/vocoder"}\n' \
        > $Z/shared.json  # (the vocoder is optional: without speech-tts/vocoder the rap model uses Griffin-Lim)
      $P -m modalities.rap.train --data $D --out $Z --tokenizer $Z/tokenizer ;;
    rap:aligned)  # each lyric word's phonemes just before its slot's vocal frame; the LM goes on from the one
      # `lm export` made (same vocabulary) on this stream, then replaces it
      $P -m modalities.rap.train --data $D --out $Z --tokenizer $Z/tokenizer --aligned
      $S train-lm --preset text-12m --vocab "$(vocab_size)" --train $D/train.pt --heldout $D/heldout.pt \
        --out runs/$M-aligned-lm --steps ${ALIGNED_STEPS:-800} --batch 4 --seq 2048 --context 2048 --eval-every 100 \
        --eval-windows 32 --max-minutes "$MINUTES" --init $Z/lm
      $S train-lm --preset text-12m --train $D/train.pt --heldout $D/heldout.pt --out runs/$M-aligned-lm --export $Z/lm ;;
    rap:prompt) $P -m modalities.rap.train --data $D --out $Z --prompt-only ;;
    *:lm)
      $S train-lm --preset text-12m --vocab "$(vocab_size)" --train $D/train.pt --heldout $D/heldout.pt \
        --out runs/$M-lm --steps ${LM[0]} --batch ${LM[1]} --seq ${LM[2]} --context ${LM[2]} --eval-every 250 \
        --eval-windows 32 --max-minutes "$MINUTES" ;;
    *:export) $S train-lm --preset text-12m --train $D/train.pt --heldout $D/heldout.pt --out runs/$M-lm --export $Z/lm ;;
    *:heads)
      $S train-heads --target $Z/lm --kind ${HEADS[0]} --data $D/train.pt --out runs/$M-heads \
        --new-tokens ${HEADS[1]} --temperature ${HEADS[2]} --sequences 256 --steps ${HEAD_STEPS:-600} \
        --rules sample tolerance:3 tolerance:5 ${HEADS[3]:+--cpu-tree-size ${HEADS[3]}} --max-minutes "$MINUTES" \
        ${HEAD_ARGS[@]+"${HEAD_ARGS[@]}"}
      mkdir -p $Z/heads && cp runs/$M-heads/heads.safetensors runs/$M-heads/heads.json $Z/heads/ ;;
    image:tv)  # the heads fine-tuned on total variation, the chance a drawn guess is rejected, on 1536
      # guided rasters (the first 512 are the heads step's): 1200 steps, then 2400 more from those weights on the
      # same rasters; then calibrated on 32 fresh ones like the other sets
      TV12=("${TV[@]}" --sequences 1536 --cpu-tree-size 7)
      $S train-heads "${TV12[@]}" --out runs/$M-heads-tv --steps 1200 --init $Z/heads
      mkdir -p runs/$M-heads-tv2 && ln -sf ../$M-heads-tv/selfdistill.pt runs/$M-heads-tv2/selfdistill.pt
      $S train-heads "${TV12[@]}" --out runs/$M-heads-tv2 --steps 2400 --init runs/$M-heads-tv
      $S calibrate-heads --target $Z/lm --heads runs/$M-heads-tv2 "${GUIDED[@]}" --sequences 32
      cp runs/$M-heads-tv2/heads.safetensors runs/$M-heads-tv2/heads.json $Z/heads/ ;;
    image:tv14)  # the same total-variation fine-tuning from the shipped heads on 3072 fresh rasters (other
      # prompts and draws than before: --seed 7), calibrated like `tv`; tree size 3 as `treesize` stores it.
      # TV_SEED=8 (and so on) runs it again on other fresh rasters, into runs/image-heads-tv14-s8; the shipped set is
      # the seed-7 run, copied into $Z/heads as `tv` copies its own (a TV_SEED run is left in runs/ to compare)
      OUT=runs/$M-heads-tv14${TV_SEED:+-s$TV_SEED}
      $S train-heads "${TV[@]}" --sequences 3072 --cpu-tree-size 3 --seed ${TV_SEED:-7} --out $OUT \
        --steps ${HEAD_STEPS:-2400} --init $Z/heads
      $S calibrate-heads --target $Z/lm --heads $OUT "${GUIDED[@]}" --sequences 32
      if [ -z "${TV_SEED:-}" ]; then cp $OUT/heads.safetensors $OUT/heads.json $Z/heads/; fi ;;
    image:treesize)  # the CPU tree size 3 added to the shipped heads alone, the fastest of 2-6 and 8 on
      # training captions (`specgen bench image --split train --captions 8 --samples 2 --sample-batch 1 --tree-sizes
      # 3 4 5 6 --fp32-drafting`, then `--tree-size 3 --tree-sizes 2 4`; docs/bench/image-tree-sizes-train*.json).
      # The `tv` step stores 7; this step runs after it: 3 beat 7 again on training captions
      # with the leaner draft rounds (`--split train --captions 16 ... --rows drawn --tree-sizes 3 [--seed 1|2]`,
      # docs/bench/image-s13-train*.json)
      $P -c "from specgen.drafters.heads import write_config; write_config('$Z/heads', {'cpu_tree_size': 3})" ;;
    rap:calibrate)  # the shipped heads' tree table for drawn guesses (vocal tokens only), added alone;
      # and their CPU tree size, 7, the fastest of 6, 7 and 8 on training songs (`specgen bench rap --split
      # train --songs 16 --tree-sizes 6 7 --fp32-drafting`, docs/bench/rap-tree-sizes-train.json)
      $S calibrate-heads --target $Z/lm --heads $Z/heads --data $D/heldout.pt --rules drawn --only-rules \
        --sequences 16 --new-tokens 256 --gen-batch 16 --cpu-tree-size 7 ;;
    speech-aligned:bench) $S bench speech --model $Z --data $D --sentences 12 --tolerances 1 3 5 --no-exact \
                            --out bench_out/$M ;;
    *:bench) $S bench $M --model $Z --out bench_out ;;
    *) echo "$M has no step $step"; exit 2 ;;
  esac
done
