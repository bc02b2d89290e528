"""MTCNN P/R/O-Net as plain torch modules (architecture copied from facenet-pytorch 2.6.0,
facenet_pytorch/models/mtcnn.py, MIT licence), loading the state dicts shipped in the wheel."""
import torch
from torch import nn

class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3); self.prelu1 = nn.PReLU(10); self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3); self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3); self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1); self.softmax4_1 = nn.Softmax(dim=1); self.conv4_2 = nn.Conv2d(32, 4, 1)
    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))

class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3); self.prelu1 = nn.PReLU(28); self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3); self.prelu2 = nn.PReLU(48); self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2); self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128); self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2); self.softmax5_1 = nn.Softmax(dim=1); self.dense5_2 = nn.Linear(128, 4)
    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))

class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3); self.prelu1 = nn.PReLU(32); self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3); self.prelu2 = nn.PReLU(64); self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3); self.prelu3 = nn.PReLU(64); self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2); self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256); self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2); self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4); self.dense6_3 = nn.Linear(256, 10)
    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

def load(name, data_dir):
    m = {'pnet': PNet, 'rnet': RNet, 'onet': ONet}[name]()
    m.load_state_dict(torch.load(f'{data_dir}/{name}.pt', map_location='cpu', weights_only=True))
    return m.eval()
