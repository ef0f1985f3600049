"""The cluster side of raybake: `python -m job` runs a transformers task over a corpus on Ray.

It never imports the client (raybake/); the two share only this command line and the files
it writes.
"""
