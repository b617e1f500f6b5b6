"""python -m train.sun: notebook 003's regression — where is the sun? — trained on its image folder.

    python -m train.sun make-data --out data/sun          # a data set in the notebook's layout (it was never published)
    python -m train.sun --data-dir data/sun --out runs/sun

--data-dir is notebook 003's `dataset_reg` layout: DIR/train/format.json and DIR/test/format.json, each a JSON
object from an image file name (in that folder) to the sun's [x, y] in pixels; images of any format PIL opens,
converted to RGB. The default is the notebook's recipe: sun_regressor on ToTensor's [0, 1] pixels, MSELoss,
Adam(lr=1e-3, weight_decay=1e-3) (torch's L2), batch 32, 5 epochs. Each epoch prints the notebook's loss_mean
(the mean training loss of the epoch) and its test MSE Q.
"""

import sys

from train import cli
from train.data import sun as sun_data

COMMAND = cli.Command(
    prog="python -m train.sun", doc=__doc__, datasets=("sun",), model="sun_regressor", out="runs/sun",
    data_dir_help="notebook 003's folder: DIR/train/format.json, DIR/test/format.json and their images")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["make-data"]:
        return sun_data.make_data_main(argv[1:])
    return cli.main(argv, COMMAND)


if __name__ == "__main__":
    sys.exit(main())
