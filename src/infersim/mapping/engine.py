"""Engine defaults, written once: vLLM v1's max_num_seqs (256), max_num_batched_tokens (8192) and
KV block size (16 tokens). TensorRT-LLM's common max_num_tokens is also 8192. Every one is an
assumption the user can override (`infersim simulate --max-batch ...`, a deployment file's `engine:`)."""
MAX_BATCH = 256
MAX_TOKENS_PER_STEP = 8192
BLOCK_TOKENS = 16
ROUTER = "least-outstanding"  # send each request to the replica with the fewest outstanding tokens
