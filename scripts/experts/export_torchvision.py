#!/usr/bin/python3
"""Export a torchvision classifier as a net2net TorchScript expert.

The module takes images as net2net passes them (float32 N x C x H x W in [-1, 1], 1 or 3
channels, any size), does its own resizing and ImageNet normalisation, and has one method per
stage, so that any layer can be the condition expert:

  stem(x)    after conv1/bn/relu/maxpool, flattened      stage1(x) .. stage4(x)  flattened
  pool(x)    global-average-pooled stage4 (2048 for ResNet-50) = encode(x)
  forward(x) the logits

  scripts/experts/export_torchvision.py --arch resnet50 --out experts/resnet50.pt
  scripts/experts/export_torchvision.py --arch resnet50 --weights /path/resnet50.pth --out ...
  net2net-extract --data images:photos/ --expert feat=ts:experts/resnet50.pt:stage3 --out cache.h5

Without --weights the network has random weights (nothing can be downloaded on machines
without internet; give a state_dict file you brought along, e.g. torchvision's
resnet50-0676ba61.pth, or the stylized-ImageNet ResNet-50 of the paper's sketch experiment).
Flattened stages are large (stage1 of ResNet-50 at 224 px is 256*56*56); --size makes the
input smaller, and --pool-stages averages each stage over space instead.
"""
import argparse

import torch
import torch.nn.functional as F
import torchvision


class StagedResNet(torch.nn.Module):
    def __init__(self, net, size: int, pool_stages: bool):
        super().__init__()
        self.net = net
        self.size = size
        self.pool_stages = pool_stages
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(1) == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=[self.size, self.size], mode="bilinear", align_corners=False)
        x = (x + 1.0) / 2.0  # [-1, 1] -> [0, 1]
        return (x - self.mean) / self.std

    def out(self, h: torch.Tensor) -> torch.Tensor:
        if self.pool_stages:
            return h.mean(dim=[2, 3])
        return h.flatten(1)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        return n.maxpool(n.relu(n.bn1(n.conv1(self.prepare(x)))))

    @torch.jit.export
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self._stem(x))

    @torch.jit.export
    def stage1(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.net.layer1(self._stem(x)))

    @torch.jit.export
    def stage2(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.net.layer2(self.net.layer1(self._stem(x))))

    @torch.jit.export
    def stage3(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        return self.out(n.layer3(n.layer2(n.layer1(self._stem(x)))))

    @torch.jit.export
    def stage4(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        return self.out(n.layer4(n.layer3(n.layer2(n.layer1(self._stem(x))))))

    @torch.jit.export
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        return torch.flatten(n.avgpool(n.layer4(n.layer3(n.layer2(n.layer1(self._stem(x)))))), 1)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.pool(x))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet50", help="a torchvision ResNet: resnet18, resnet34, resnet50, ...")
    p.add_argument("--weights", help="state_dict file (.pth) to load; default: random weights")
    p.add_argument("--size", type=int, default=224, help="input size the module resizes to (default 224)")
    p.add_argument("--pool-stages", action="store_true", help="average stages over space instead of flattening")
    p.add_argument("--seed", type=int, default=23, help="seed of the random weights")
    p.add_argument("--out", required=True, help="output TorchScript file")
    a = p.parse_args()
    if not a.arch.startswith("resnet"):
        p.error("only torchvision ResNets have the staged layout this script exports")
    torch.manual_seed(a.seed)
    net = getattr(torchvision.models, a.arch)(weights=None)
    if a.weights:
        net.load_state_dict(torch.load(a.weights, map_location="cpu"))
    module = torch.jit.script(StagedResNet(net.eval(), a.size, a.pool_stages).eval())
    module.save(a.out)


if __name__ == "__main__":
    main()
