"""The partner API's .proto sources (v2, v0) and the Python code generated from them.

Regenerate with `python -m leasehold.proto.generate`; never edit the generated files.
"""
