"""`python -m llm_labeler`, or this file run by path: `spark-submit .../llm_labeler/__main__.py score --engine spark`."""

import os
import sys

if not __package__:  # run as a file: its folder must not shadow top-level modules (datasets, metrics, ...)
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from llm_labeler.cli import main

main()
