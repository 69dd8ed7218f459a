"""Recurrent sequence models, one file per paper: the LSTM and the GRU (drop-in replacements for
``torch.nn.LSTM`` and ``torch.nn.GRU``, on the shared bookkeeping of ``paperzoo.layers.recurrent``), and the two
recurrent translation models built on them, Seq2Seq (Sutskever et al.) and RNNsearch (Bahdanau et al.).
"""
