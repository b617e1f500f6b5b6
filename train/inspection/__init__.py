"""Notebook 004's tools on a trained run or on pretrained weights, drawn as PNGs with an index (`train.inspect`)."""
