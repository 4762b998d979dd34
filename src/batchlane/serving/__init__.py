"""The inference container: the SageMaker serving contract (``/ping``, ``/execution-parameters``, ``/invocations``).

``app.create_app(settings)`` builds the ASGI app, ``server.run_server(settings)`` runs it under uvicorn,
``handler`` holds the ``inference.py`` hook contract, ``classifier`` the default Hugging Face handler,
``batching`` the token-budget planner and ``archive`` model.tar.gz extraction and packaging. ``code_paths`` finds the
user's code and keeps it inside the model folder; ``environment`` says what a model process's environment may hold.
"""
