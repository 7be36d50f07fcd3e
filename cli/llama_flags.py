"""What `pygguf` answers to each flag of llama.cpp: implemented, ignored (with why) or refused (with why).

The flags are those of today's `common/arg.cpp` (llama-completion, llama-cli and the other tools:
tests/data/cli/llamacpp_flags.json is the recorded list, bench/record_llama_flags.py records it) and
of 2023's `main`. Each entry is written `"SPELLINGS VALUES"`: the spellings start with '-', each word
after them is one value that always follows (`"-c --ctx-size N"`); flags whose value is optional
(`--color [on|off|auto]`) are written out as `Flag`s. Implemented flags are declared as Click options
(main.py and its option bundles); pygguf's own options (--json, ...) join them from Click.
"""
from __future__ import annotations

from dataclasses import replace

from pygguf_cli.argv import ON_OFF_AUTO, Answer, Flag, Parsed, flag_table, normalise, tokenise, with_click_options

IMPLEMENTED, IGNORED, REFUSED = Answer.IMPLEMENTED, Answer.IGNORED, Answer.REFUSED


def flag(spec: str, answer: Answer = IMPLEMENTED, reason: str = "") -> Flag:
    words = spec.split()
    spellings = tuple(w for w in words if w.startswith("-"))
    assert words[:len(spellings)] == list(spellings), spec     # spellings first, then the values
    return Flag(spellings, answer, reason, values=len(words) - len(spellings))


def group(answer: Answer, reason: str, *specs: str | Flag) -> list[Flag]:
    """Flags sharing an answer and its reason (a `Flag` given whole takes them too)."""
    return [replace(spec, answer=answer, reason=reason) if isinstance(spec, Flag) else flag(spec, answer, reason)
            for spec in specs]


NO_GPU = "pygguf runs on the CPU only"
NO_PINNING = "pygguf neither pins threads to CPUs nor changes their priority"
NO_DOWNLOADS = "pygguf never downloads: give a local GGUF file with -m"
NO_SERVER = "a llama-server option: pygguf has no server"
SPECULATIVE = "no speculative decoding here: the model generates alone; a draft only changes the speed"
MULTIMODAL = "text only: no multimodal projector, images, audio or video"
EMBEDDINGS = "pygguf generates text, it has no embeddings output"
ROPE_SCALING = "only --rope-freq-base and linear --rope-freq-scale are supported"

IMPLEMENTED_FLAGS = group(
    IMPLEMENTED, "",
    Flag(("-h", "--help", "--usage"), click="--help"),
    "--version",
    # model, context, threads
    "-m --model FNAME", "-c --ctx-size N", "-t --threads N", "-tb --threads-batch N", "-b --batch-size N",
    "-ub --ubatch-size N", "-ctk --cache-type-k TYPE", "-ctv --cache-type-v TYPE",
    "-ngl --gpu-layers --n-gpu-layers N",           # warns like llama.cpp's CPU build, then runs on the CPU
    "--rope-freq-base N", "--rope-freq-scale N",
    "--mlock", "--no-mmap", "--mmap",               # declared by the model options (ModelParams)
    # prompt, output
    "-p --prompt PROMPT", "-f --file FNAME", "-e --escape", "--no-escape", "-sys --system-prompt PROMPT",
    "-sysf --system-prompt-file FNAME", "--display-prompt", "--no-display-prompt", "--verbose-prompt",
    "-sp --special",
    Flag(("-co", "--color"), optional=ON_OFF_AUTO, implied="on"),
    "--prompt-cache FNAME", "--prompt-cache-all", "--prompt-cache-ro",      # cli/prompt_cache.py
    # generation
    "-n --predict --n-predict N", "--keep N", "--ignore-eos", "-r --reverse-prompt PROMPT",
    "--context-shift", "--no-context-shift",
    # sampling and constraints
    "-s --seed SEED", "--temp --temperature N", "--top-k N", "--top-p N", "--min-p N",
    "--top-nsigma --top-n-sigma N", "--typical --typical-p N", "--repeat-last-n N", "--repeat-penalty N",
    "--presence-penalty N", "--frequency-penalty N", "--dry-multiplier N", "--dry-base N",
    "--dry-allowed-length N", "--dry-penalty-last-n N", "--dry-sequence-breaker STRING", "--xtc-probability N",
    "--xtc-threshold N", "--dynatemp-range N", "--dynatemp-exp N", "--mirostat N", "--mirostat-lr N",
    "--mirostat-ent N", "-l --logit-bias TOKEN_ID(+/-)BIAS", "--samplers SAMPLERS",
    "--sampler-seq --sampling-seq SEQUENCE", "--grammar GRAMMAR", "--grammar-file FNAME",
    "-j --json-schema SCHEMA", "-jf --json-schema-file FILE",
    # interactive and chat
    "-i --interactive", "-if --interactive-first", "-mli --multiline-input", "--in-prefix-bos",
    "--in-prefix STRING", "--in-suffix STRING", "-cnv --conversation", "-no-cnv --no-conversation",
    "-st --single-turn", "--chat-template JINJA_TEMPLATE", "--chat-template-file JINJA_TEMPLATE_FILE",
    "--jinja", "--no-jinja", "--simple-io",
    "-ins --instruct", "-cml --chatml",             # 2023 main's Alpaca and ChatML modes
    # logging
    "--log-disable", "--log-file FNAME", "-v --verbose --log-verbose",
    Flag(("-lv", "--verbosity", "--log-verbosity"), optional_int=True,
         bare=Flag(("-lv",), IGNORED, f"2023's --low-vram: {NO_GPU}")),
)

IGNORED_FLAGS = (
    group(IGNORED, NO_PINNING,
          "-C --cpu-mask M", "-Cr --cpu-range lo-hi", "--cpu-strict <0|1>", "--prio N", "--poll <0...100>",
          "-Cb --cpu-mask-batch M", "-Crb --cpu-range-batch lo-hi", "--cpu-strict-batch <0|1>",
          "--prio-batch N", "--poll-batch <0|1>")
    + group(IGNORED, NO_GPU,
            "-kvo --kv-offload", "-nkvo --no-kv-offload", "--no-host", "-dev --device <dev1,dev2,..>",
            "-ot --override-tensor PATTERNS", "-cmoe --cpu-moe", "-ncmoe --n-cpu-moe N", "-ncffn --n-cpu-ffn N",
            "-sm --split-mode MODE", "-ts --tensor-split N0,N1", "-mg --main-gpu INDEX", "--op-offload",
            "--no-op-offload", "-bs --backend-sampling", "--low-vram", "-nommq --no-mul-mat-q",
            "-mmq --mul-mat-q", "--rpc SERVERS")
    + group(IGNORED, "attention is one fused CPU routine here, for every KV cache type",
            Flag(("-fa", "--flash-attn"), optional=ON_OFF_AUTO))
    + group(IGNORED, "pygguf does not place threads or memory per NUMA node",
            Flag(("--numa",), optional=("distribute", "isolate", "numactl")))
    + group(IGNORED, "there is no device memory to fit; -c 0 is already capped to fit the RAM",
            "-fit --fit [on|off]", "-fitp --fit-print [on|off]", "-fitt --fit-target MiB0,MiB1", "-fitc --fit-ctx N")
    + group(IGNORED, "the model file is memory-mapped; --no-mmap reads it, --mlock locks it",
            "-lm --load-mode MODE", "-lzm --lazy-mode MODE")
    + group(IGNORED, "weights are always repacked for the CPU's kernels here", "--repack", "-nr --no-repack")
    + group(IGNORED, "there is no warm-up run: timings start with the prompt", "--warmup", "--no-warmup")
    + group(IGNORED, "the KV cache holds the whole context for every layer", "--swa-full")
    + group(IGNORED, "main runs one sequence; pygguf-batch runs many",
            "-np --parallel N", "-kvu --kv-unified", "-no-kvu --no-kv-unified", "-cb --cont-batching",
            "-nocb --no-cont-batching")
    + group(IGNORED, "one sequence, shifted in place: the KV cache never needs defragmenting", "-dt --defrag-thold N")
    + group(IGNORED, "the timings block is always printed on stderr",
            "--perf", "--no-perf", "--show-timings", "--no-show-timings", "-ptc --print-token-count N")
    + group(IGNORED, "pygguf's log lines have no colours, prefixes or timestamps",
            "--log-colors [on|off|auto]", "--log-prefix", "--no-log-prefix", "--log-timestamps",
            "--no-log-timestamps")
    + group(IGNORED, "pygguf never downloads anything", "--offline")
    + group(IGNORED, "the reply is printed as generated; pygguf does not parse it",
            "--skip-chat-parsing", "--no-skip-chat-parsing")
    + group(IGNORED, "a GGML-era option: read from the GGUF file", "-gqa --gqa N", "-eps --rms-norm-eps N")
    + group(IGNORED, SPECULATIVE,
            "--spec-draft-hf -hfd -hfrd --hf-repo-draft REPO", "--spec-draft-threads -td --threads-draft N",
            "--spec-draft-threads-batch -tbd --threads-batch-draft N",
            "--spec-draft-cpu-mask -Cd --cpu-mask-draft M", "--spec-draft-cpu-range -Crd --cpu-range-draft lo-hi",
            "--spec-draft-cpu-strict --cpu-strict-draft <0|1>", "--spec-draft-prio --prio-draft N",
            "--spec-draft-poll --poll-draft <0|1>", "--spec-draft-cpu-mask-batch -Cbd --cpu-mask-batch-draft M",
            "--spec-draft-cpu-range-batch -Crbd --cpu-range-batch-draft lo-hi",
            "--spec-draft-cpu-strict-batch --cpu-strict-batch-draft <0|1>",
            "--spec-draft-prio-batch --prio-batch-draft N", "--spec-draft-poll-batch --poll-batch-draft <0|1>",
            "--spec-draft-type-k -ctkd --cache-type-k-draft TYPE",
            "--spec-draft-type-v -ctvd --cache-type-v-draft TYPE",
            "--spec-draft-override-tensor -otd --override-tensor-draft PATTERNS",
            "--spec-draft-cpu-moe -cmoed --cpu-moe-draft",
            "--spec-draft-n-cpu-moe --spec-draft-ncmoe -ncmoed --n-cpu-moe-draft N",
            "--spec-draft-n-max N", "--spec-draft-n-min N", "--spec-synth-len L", "--spec-synth-rates P0,P1",
            "--spec-draft-p-split --draft-p-split P", "--spec-draft-p-min --draft-p-min P",
            "--spec-draft-backend-sampling", "--no-spec-draft-backend-sampling",
            "--spec-draft-device -devd --device-draft DEVICES",
            "--spec-draft-ngl -ngld --gpu-layers-draft --n-gpu-layers-draft N",
            "--spec-draft-model -md --model-draft FNAME", "--spec-type TYPES", "--spec-ngram-mod-n-min N",
            "--spec-ngram-mod-n-max N", "--spec-ngram-mod-n-match N", "--spec-ngram-simple-size-n N",
            "--spec-ngram-simple-size-m N", "--spec-ngram-simple-min-hits N", "--spec-ngram-map-k-size-n N",
            "--spec-ngram-map-k-size-m N", "--spec-ngram-map-k-min-hits N", "--spec-ngram-map-k4v-size-n N",
            "--spec-ngram-map-k4v-size-m N", "--spec-ngram-map-k4v-min-hits N",
            "--draft --draft-n --draft-max N", "--draft-min --draft-n-min N", "--spec-ngram-size-n N",
            "--spec-ngram-size-m N", "--spec-ngram-min-hits N", "-pa --p-accept N", "-ps --p-split N")
)

REFUSED_FLAGS = (
    group(REFUSED, NO_DOWNLOADS,
          "-mu --model-url MODEL_URL", "-dr --docker-repo REPO", "-hf -hfr --hf-repo REPO", "-hff --hf-file FILE",
          "-hft --hf-token TOKEN", "--mtp", "--dflash", "--eagle3", "-cl --cache-list",
          "--embd-gemma-default", "--fim-qwen-1.5b-default", "--fim-qwen-3b-default", "--fim-qwen-7b-default",
          "--fim-qwen-7b-spec", "--fim-qwen-14b-spec", "--fim-qwen-30b-default", "--gpt-oss-20b-default",
          "--gpt-oss-120b-default", "--vision-gemma-4b-default", "--vision-gemma-12b-default",
          "--spec-default")
    + group(REFUSED, "no LoRA adapters yet",
            "--lora FNAME", "--lora-scaled FNAME:SCALE", "--lora-base FNAME", "--lora-init-without-apply")
    + group(REFUSED, "no control vectors", "--control-vector FNAME", "--control-vector-scaled FNAME:SCALE",
            "--control-vector-layer-range START END")
    + group(REFUSED, "GGUF metadata cannot be overridden here", "--override-kv KEY=TYPE:VALUE")
    + group(REFUSED, "tensor data is not validated here", "--check-tensors")
    + group(REFUSED, ROPE_SCALING,
            "--rope-scaling {none,linear,yarn}", "--rope-scale N", "--yarn-orig-ctx N", "--yarn-ext-factor N",
            "--yarn-attn-factor N", "--yarn-beta-slow N", "--yarn-beta-fast N")
    + group(REFUSED, "no Self-Extend group attention", "-gan --grp-attn-n N", "-gaw --grp-attn-w N")
    + group(REFUSED, "the KV cache holds f16, q8_0 or q4_0 with -ctk/-ctv, not f32", "--memory-f32")
    + group(REFUSED, "tail-free sampling is not implemented; llama.cpp removed it in 2024", "--tfs N")
    + group(REFUSED, "the newline is penalised like any token; llama.cpp removed the switch",
            "--no-penalize-nl")
    + group(REFUSED, "no adaptive-p sampler", "--adaptive-target N", "--adaptive-decay N")
    + group(REFUSED, "no classifier-free guidance",
            "--cfg-negative-prompt PROMPT", "--cfg-negative-prompt-file FNAME", "--cfg-scale N")
    + group(REFUSED, "no thinking-model handling: reasoning formats, budgets",
            "--reasoning-format FORMAT", "-rea --reasoning [on|off|auto]", "--reasoning-effort LEVEL",
            "--reasoning-budget N", "--reasoning-budget-message MESSAGE", "--reasoning-preserve",
            "--no-reasoning-preserve")
    + group(REFUSED, "chat template variables cannot be set here", "--chat-template-kwargs STRING")
    + group(REFUSED, "no lookup decoding", "-lcs --lookup-cache-static FNAME", "-lcd --lookup-cache-dynamic FNAME")
    + group(REFUSED, MULTIMODAL,
            "-mm --mmproj FILE", "-mmu --mmproj-url URL", "--mmproj-auto", "--no-mmproj --no-mmproj-auto",
            "--mmproj-offload", "--no-mmproj-offload", "-mmdev --mmproj-device DEVICE",
            "--image --audio --video FILE", "--image-min-tokens N", "--image-max-tokens N",
            "--mtmd-batch-max-tokens N", "--video-fps N", "--video-timestamp-interval N", "--video-ffmpeg-dir DIR")
    + group(REFUSED, "the prompt is text: -p or -f", "-bf --binary-file FNAME", "--random-prompt")
    + group(REFUSED, "nothing to list: " + NO_GPU, "--list-devices")
    + group(REFUSED, "no shell completion script", "--completion-bash")
    + group(REFUSED, "text goes to stdout (redirect it to a file)", "-o --output --output-file FNAME")
    + group(REFUSED, "no YAML run logs", "-ld --logdir LOGDIR")
    + group(REFUSED, "log lines are plain text", "--log-jsonl", "--no-log-jsonl")
    + group(REFUSED, "a debugging option of 2023's main", "--mtest", "--export", "--dump-kv-cache -dkvc",
            "--logits-all")
    + group(REFUSED, "no infill (fill-in-the-middle) mode", "--infill")
    + group(REFUSED, EMBEDDINGS,
            "--pooling {none,mean,cls,last,rank}", "--attention {causal,non-causal}", "--embedding --embeddings",
            "--embd-normalize N", "--embd-output-format FORMAT", "--embd-separator STRING", "--cls-separator STRING",
            "--rerank --reranking")
    + group(REFUSED, "a llama-perplexity option: pygguf-perplexity measures perplexity",
            "--perplexity", "--hellaswag", "--hellaswag-tasks N", "--winogrande", "--winogrande-tasks N",
            "--multiple-choice", "--multiple-choice-tasks N", "--kl-divergence",
            "--save-all-logits --kl-divergence-base FNAME", "--ppl-stride N", "--ppl-output-type <0|1>",
            "--chunks N")
    + group(REFUSED, "a llama-imatrix option: pygguf makes no importance matrix",
            "--in-file FNAME", "-ofreq --output-frequency N", "--output-format FORMAT", "--save-frequency N",
            "--process-output", "--ppl", "--no-ppl", "--chunk --from-chunk N", "--show-statistics",
            "--parse-special")
    + group(REFUSED, "a llama-tokenize option: pygguf-tokenize prints token ids",
            "--ids", "--stdin", "--no-bos", "--no-parse-special", "--show-count")
    + group(REFUSED, "a llama-batched-bench option: pygguf-bench measures speed",
            "-pps", "-tgs", "-npp n0,n1", "-ntg n0,n1", "-npl n0,n1")
    + group(REFUSED, "a llama-parallel option: pygguf-batch runs many prompts", "-ns --sequences N", "--junk N")
    + group(REFUSED, "a llama-passkey option", "--pos N")
    + group(REFUSED, "a llama-retrieval option", "--context-file FNAME", "--chunk-size N", "--chunk-separator STRING")
    + group(REFUSED, "no control-vector generator",
            "--positive-file FNAME", "--negative-file FNAME", "--pca-batch N", "--pca-iter N", "--method METHOD")
    + group(REFUSED, "no text-to-speech", "--tts-lang LANG", "--tts-speaker-file FNAME")
    + group(REFUSED, "no diffusion models",
            "--diffusion-steps N", "--diffusion-visual", "--diffusion-eps F", "--diffusion-algorithm N",
            "--diffusion-alg-temp F", "--diffusion-block-length N", "--diffusion-cfg-scale F",
            "--diffusion-add-gumbel-noise F")
    + group(REFUSED, "no training or fine-tuning",
            "-lr --learning-rate ALPHA", "-lr-min --learning-rate-min ALPHA",
            "-decay-epochs --learning-rate-decay-epochs ALPHA", "-wd --weight-decay WD",
            "-val-split --val-split FRACTION", "-epochs --epochs N", "-opt --optimizer sgd|adamw")
    + group(REFUSED, "an option of llama.cpp's debugging tools",
            "--check", "--save-logits", "--logits-output-dir PATH", "--tensor-filter REGEX")
    + group(REFUSED, NO_SERVER,
            "--server-base URL", "--kv-unified-per-slot N", "-ctxcp --ctx-checkpoints --swa-checkpoints N",
            "-cms --checkpoint-min-step N", "-cram --cache-ram N", "--cache-idle-slots", "--no-cache-idle-slots",
            "--spm-infill", "-a --alias STRING", "--tags STRING", "--host HOST", "--port PORT", "--reuse-port",
            "--path PATH", "--cors-origins ORIGINS", "--cors-methods METHODS", "--cors-headers HEADERS",
            "--cors-credentials", "--no-cors-credentials", "--api-prefix PREFIX",
            "--ui-config --webui-config JSON", "--ui-config-file --webui-config-file PATH",
            "--ui-mcp-proxy --webui-mcp-proxy", "--no-ui-mcp-proxy --no-webui-mcp-proxy",
            "--tools TOOLS", "--tools-runtime OPTION", "--mcp-servers-config PATH", "--mcp-servers-json JSON",
            "-ag --agent", "-no-ag --no-agent", "--ui --webui", "--no-ui --no-webui", "--api-key KEY",
            "--api-key-file FNAME", "--ssl-key-file FNAME", "--ssl-cert-file FNAME", "-to --timeout N",
            "--sse-ping-interval N", "--threads-http N", "--cache-prompt", "--no-cache-prompt", "--cache-reuse N",
            "--metrics", "--props", "--slots", "--no-slots", "--slot-save-path PATH", "--media-path PATH",
            "--models-dir PATH", "--models-preset PATH", "--models-max N", "--models-autoload",
            "--no-models-autoload", "--prefill-assistant", "--no-prefill-assistant",
            "-sps --slot-prompt-similarity SIMILARITY", "--sleep-idle-seconds SECONDS", "--log-prompts-dir PATH")
)

LLAMA_FLAGS: list[Flag] = IMPLEMENTED_FLAGS + IGNORED_FLAGS + REFUSED_FLAGS

# ctx.meta keys: the notices of ignored flags (printed once logging is set up), and the flags as typed
IGNORED_NOTICES = "pygguf.ignored_flags"
TYPED_FLAGS = "pygguf.typed_flags"


def click_options(command) -> list[tuple[list[str], bool]]:
    """(spellings, takes a value) of each option Click declares on `command`."""
    return [(p.opts + p.secondary_opts, not p.is_flag and p.nargs != 0)
            for p in command.params if getattr(p, "opts", None) and p.param_type_name == "option"]


def command_table(command) -> tuple[dict[str, Flag], dict[str, str]]:
    """The flag table of a Click command (llama.cpp's flags plus the command's own), and for each
    spelling the `--long` spelling Click takes a value on."""
    options = click_options(command)
    table = flag_table(with_click_options(LLAMA_FLAGS, options))
    click_long: dict[str, str] = {}
    for spellings, _ in options:
        long = next((s for s in spellings if s.startswith("--")), spellings[0])
        for spelling in spellings:
            click_long[normalise(spelling)] = long
    return table, click_long


def read_command_line(command, argv: list[str]) -> Parsed:
    table, click_long = command_table(command)
    return tokenise(argv, table, click_long)
