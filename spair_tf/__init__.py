"""spair_tf: SPAIR (Crawford & Pineau, AAAI 2019) in TensorFlow 2 / Keras."""
