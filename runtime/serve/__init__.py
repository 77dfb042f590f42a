"""``vggsim serve``: the HTTP service (FastAPI + uvicorn, the ``serve`` extra).

Importing ``vggsim`` never imports this package's web dependencies: ``vggsim.serve.app``
and the modules it uses import FastAPI; ``config``, ``batcher`` and ``decoding`` do not.
"""
