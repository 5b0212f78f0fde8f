"""PixelCNN++ (Salimans, Karpathy, Chen & Kingma 2017) in TensorFlow 2.

`pixel_cnn_pp.nn` holds the layers and the discretised logistic mixture likelihood;
`pixel_cnn_pp.model` the network, its configuration and the naive sampler.
"""
