"""Image classifiers: CNNs, vision transformers and the rest, one file per paper."""
