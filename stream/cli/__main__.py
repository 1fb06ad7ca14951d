"""``python -m stream.cli``: the same as the ``facewatch`` command."""
from stream.cli import main

main()
