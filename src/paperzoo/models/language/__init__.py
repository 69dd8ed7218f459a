"""Language models: the Transformer, BERT and GPT, one file per paper."""
