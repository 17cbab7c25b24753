"""Engine defaults, written once: vLLM v1's max_num_seqs (256), max_num_batched_tokens (8192) and
KV block size (16 tokens). TensorRT-LLM's common max_num_tokens is also 8192. Every one is an
assumption the user can override (`infersim simulate --max-batch ...`, a deployment file's `engine:`)."""
MAX_BATCH = 256
MAX_TOKENS_PER_STEP = 8192
BLOCK_TOKENS = 16
ROUTER = "least-outstanding"  # send each request to the replica with the fewest outstanding tokens


def rank_prefill_chunk(max_tokens_per_step: int, dp_ranks: int) -> int:
    """Prefill chunk per prompt under DP attention with `dp_ranks` attention ranks: the step's
    token budget split evenly over the ranks, so up to `dp_ranks` prompts are prefilled side by
    side, one per rank, instead of one long prompt keeping a single rank busy while the others
    idle. SGLang divides chunked_prefill_size by dp_size when DP attention is on
    (server_args.py, enable_dp_attention); TensorRT-LLM's attention-DP ranks each schedule their
    own requests. The whole budget without DP attention (dp_ranks 1). Tokens, at least 1."""
    return max(1, int(max_tokens_per_step) // max(int(dp_ranks), 1))
