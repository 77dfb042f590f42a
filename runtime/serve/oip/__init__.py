"""The Open Inference Protocol (KServe v2 / Triton HTTP) in front of the same service as /v1."""
