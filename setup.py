"""Install the PixelCNN++ / Fast PixelCNN++ / Glow / BigGAN packages and their scripts
(`python3 -m train`, `python3 -m sample` work from any directory after `pip install .`).

TensorFlow is chosen by an extra so that the CPU and GPU builds never get installed side by side:
    pip install -e ".[cpu]"   # tensorflow-cpu (laptops, CI)
    pip install -e ".[gpu]"   # tensorflow with its CUDA libraries (Linux + NVIDIA)
"""
from setuptools import find_packages, setup

TF_RANGE = ">=2.13,<2.22"

setup(
    name="pixelcnn-glow-tf2",
    version="0.1.0",
    description="PixelCNN++ (with the Fast PixelCNN++ cached sampler) and Glow in TensorFlow 2",
    python_requires=">=3.9",
    packages=find_packages(include=["data", "pixel_cnn_pp", "glow", "biggan", "fast_generation",
                                    "trainer", "trainer.*"]),
    py_modules=["train", "sample"],
    install_requires=[
        "numpy",
        "pillow",
        "tqdm",
        "tensorboard",
        # the embedded real-photo data set is cut from the photographs inside these two wheels
        "scikit-image",
        "scikit-learn",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu{TF_RANGE}"],
        "gpu": [f"tensorflow[and-cuda]{TF_RANGE}"],
        # pytest-xdist: the suite runs in two processes (README, Tests); wheel:
        # tests/test_packaging.py builds one
        "test": ["pytest", "pytest-xdist", "wheel"],
    },
)
