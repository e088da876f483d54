"""The bottom layer: argument checks and the project's vocabulary (run states, stop
reasons, metric and option names). It imports nothing else from exburn_nb."""
