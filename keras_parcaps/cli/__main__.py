"""`python -m keras_parcaps.cli`: the `keras-parcaps` command."""

import sys

from keras_parcaps.cli import main

sys.exit(main())
