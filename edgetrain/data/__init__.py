"""Data pipeline: datasets, samplers, transforms and the DataLoader."""
from .dataset import DataError, Dataset, Subset, TensorDataset, TransformDataset
from .image import ImageDataset, ImageFolder
from .collate import collate
from .loader import DataLoader
from .mnist import MNIST_MEAN, MNIST_STD, MnistDataset, load_mnist, read_idx
from .sampler import RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler
from .transforms import (Compose, Lambda, Normalize, Pad, RandomCrop, RandomHorizontalFlip,
                         ToFloat, Transform)

__all__ = [
    "DataError", "Dataset", "Subset", "TensorDataset", "TransformDataset", "ImageDataset", "ImageFolder",
    "DataLoader", "collate", "MNIST_MEAN", "MNIST_STD", "MnistDataset", "load_mnist", "read_idx",
    "RandomSampler", "Sampler", "SequentialSampler", "SubsetRandomSampler", "Compose", "Lambda",
    "Normalize", "Pad", "RandomCrop", "RandomHorizontalFlip", "ToFloat", "Transform",
]
