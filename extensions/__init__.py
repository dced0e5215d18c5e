"""Jupyter-side extensions of OpenLedger Notebooks: the kernel start-up and IPython magics."""
