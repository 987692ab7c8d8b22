"""`python -m llm_labeler`."""

from .cli import main

main()
