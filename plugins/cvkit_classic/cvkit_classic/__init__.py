"""cvkit-classic: the classic CNNs as cvkit backbones.

Importing this package registers ``LeNet5``, ``AlexNet``, ``VGG11``, ``NiN``, ``GoogLeNet`` and
``ResNet18`` in ``cvkit.registry.BACKBONES``. cvkit imports it by itself, through the
``cvkit.plugins`` entry point, the first time a registry is searched.
"""

from cvkit_classic.alexnet import AlexNet
from cvkit_classic.googlenet import GoogLeNet, Inception
from cvkit_classic.lenet import LeNet5
from cvkit_classic.nin import NiN
from cvkit_classic.resnet import BasicBlock, ResNet18
from cvkit_classic.vgg import VGG11

__all__ = ["VGG11", "AlexNet", "BasicBlock", "GoogLeNet", "Inception", "LeNet5", "NiN", "ResNet18"]
__version__ = "0.1.0"
