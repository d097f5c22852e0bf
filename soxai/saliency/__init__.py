"""Per-sample saliency maps (captum), batched, streamed to float16 shards."""
