#!/usr/bin/python3
"""An independent re-implementation, in Python PyTorch, of the reference cINN
(CompVis/net2net: ConditionalFlatCouplingFlow and its blocks, written the way the original
code is: 4-D tensors, nn.Sequential subnets, chunk/swap couplings, 1x1 convolutions for the
per-block conditioning). The C++ tests use it as an independent computation:

  reference_flow.py count CONFIG.json      prints the parameter count of the config's model
  reference_flow.py compare FILE.h5        loads the weights and inputs a C++ test wrote,
                                           runs forward and inverse, prints max differences
                                           as JSON
  reference_flow.py write-original MODEL.json DIR
                                           a model with random weights as the original
                                           repository saves it: DIR/last.ckpt (a Lightning-style
                                           checkpoint, the flow under "flow."), DIR/config.yaml
                                           (its flow_config), DIR/io.h5 (inputs x, c and the
                                           model's v, logdet, in float64)

Only for tests: never a run-time dependency of the tools.
"""
import json
import sys

import torch
import torch.nn as nn


class ActNorm(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def forward(self, x, reverse=False):
        if reverse:
            return x / self.scale - self.loc
        h = self.scale * (x + self.loc)
        logdet = x.shape[2] * x.shape[3] * torch.sum(torch.log(torch.abs(self.scale)))
        return h, logdet * torch.ones(x.shape[0]).to(x)


class VectorActNorm(ActNorm):  # used inside the embedder MLP on [N, C]
    def forward(self, x):
        return super().forward(x[:, :, None, None])[0].squeeze(-1).squeeze(-1)


class InvLeakyRelu(nn.Module):
    def __init__(self, alpha=0.9):
        super().__init__()
        self.alpha = alpha

    def forward(self, x, reverse=False):
        if reverse:
            scaling = (x >= 0).to(x) + (x < 0).to(x) * self.alpha
            return x / scaling
        scaling = (x >= 0).to(x) + (x < 0).to(x) * self.alpha
        # The reference returns 0 here; the exact log-det is the sum of log(scaling).
        return x * scaling, torch.log(scaling).sum(dim=[1, 2, 3])


class BasicFullyConnectedNet(nn.Module):
    def __init__(self, dim, depth, hidden_dim=256, use_tanh=False, norm="none", out_dim=None):
        super().__init__()
        layers = [nn.Linear(dim, hidden_dim)]
        if norm == "batchnorm":
            layers.append(nn.BatchNorm1d(hidden_dim))
        elif norm == "actnorm":
            layers.append(VectorActNorm(hidden_dim))
        layers.append(nn.LeakyReLU())
        for _ in range(depth):
            layers.append(nn.Linear(hidden_dim, hidden_dim))
            if norm == "batchnorm":
                layers.append(nn.BatchNorm1d(hidden_dim))
            elif norm == "actnorm":
                layers.append(VectorActNorm(hidden_dim))
            layers.append(nn.LeakyReLU())
        layers.append(nn.Linear(hidden_dim, dim if out_dim is None else out_dim))
        if use_tanh:
            layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)


class ConditionalDoubleVectorCouplingBlock(nn.Module):
    def __init__(self, in_channels, cond_channels, hidden_dim, depth=2):
        super().__init__()
        assert in_channels % 2 == 0, "the reference coupling needs an even dimension"
        half = in_channels // 2
        self.s = nn.ModuleList([BasicFullyConnectedNet(half + cond_channels, depth, hidden_dim, True, out_dim=half)
                                for _ in range(2)])
        self.t = nn.ModuleList([BasicFullyConnectedNet(half + cond_channels, depth, hidden_dim, False, out_dim=half)
                                for _ in range(2)])

    def forward(self, x, xc, reverse=False):
        x = x.squeeze(-1).squeeze(-1)
        xc = xc.squeeze(-1).squeeze(-1)
        if not reverse:
            logdet = 0
            for i in range(len(self.s)):
                if i % 2 != 0:
                    x = torch.cat(torch.chunk(x, 2, dim=1)[::-1], dim=1)
                x = torch.chunk(x, 2, dim=1)
                inp = torch.cat((x[0], xc), dim=1)
                scale = self.s[i](inp)
                x_ = x[1] * scale.exp() + self.t[i](inp)
                x = torch.cat((x[0], x_), dim=1)
                logdet = logdet + torch.sum(scale, dim=1)
            return x[:, :, None, None], logdet
        for i in reversed(range(len(self.s))):
            if i % 2 == 0:
                x = torch.cat(torch.chunk(x, 2, dim=1)[::-1], dim=1)
            x = torch.chunk(x, 2, dim=1)
            inp = torch.cat((x[0], xc), dim=1)
            x_ = (x[1] - self.t[i](inp)) * self.s[i](inp).neg().exp()
            x = torch.cat((x[0], x_), dim=1)
        return x[:, :, None, None]


class Shuffle(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        idx = torch.randperm(in_channels)
        self.register_buffer("forward_shuffle_idx", idx)
        self.register_buffer("backward_shuffle_idx", torch.argsort(idx))

    def forward(self, x, reverse=False):
        if not reverse:
            return x[:, self.forward_shuffle_idx, ...], 0
        return x[:, self.backward_shuffle_idx, ...]


class Block(nn.Module):
    def __init__(self, in_channels, cond_channels, hidden_dim, hidden_depth, activation, alpha):
        super().__init__()
        self.norm_layer = ActNorm(in_channels)
        self.coupling = ConditionalDoubleVectorCouplingBlock(in_channels, cond_channels, hidden_dim, hidden_depth)
        self.activation = InvLeakyRelu(alpha) if activation == "lrelu" else None
        self.shuffle = Shuffle(in_channels)

    def forward(self, x, xcond, reverse=False):
        if not reverse:
            h, logdet = self.norm_layer(x)
            if self.activation is not None:
                h, ld = self.activation(h)
                logdet = logdet + ld
            h, ld = self.coupling(h, xcond)
            logdet = logdet + ld
            h, ld = self.shuffle(h)
            return h, logdet + ld
        h = self.shuffle(x, reverse=True)
        h = self.coupling(h, xcond, reverse=True)
        if self.activation is not None:
            h = self.activation(h, reverse=True)
        return self.norm_layer(h, reverse=True)


class ConditionalFlatCouplingFlow(nn.Module):
    def __init__(self, m):
        super().__init__()
        e = m["embedding_dim"]
        self.n_flows = m["n_flows"]
        self.conditioning_option = m["conditioning"]
        self.sub_layers = nn.ModuleList()
        if self.conditioning_option != "none":
            self.conditioning_layers = nn.ModuleList()
        for _ in range(self.n_flows):
            self.sub_layers.append(Block(m["in_dim"], e, m["hidden_dim"], m["hidden_depth"], m["activation"],
                                         m.get("leaky_relu_alpha", 0.9)))
            if self.conditioning_option != "none":
                self.conditioning_layers.append(nn.Conv2d(e, e, 1))
        em = m["embedder"]
        self.embedder = BasicFullyConnectedNet(m["cond_dim"], em["depth"], em["hidden_dim"], False, em["norm"],
                                               out_dim=e)

    def forward(self, x, cond, reverse=False):
        x = x[:, :, None, None]
        embedded = self.embedder(cond)[:, :, None, None]
        hconds, hcond = [], embedded
        for i in range(self.n_flows):
            if self.conditioning_option == "parallel":
                hcond = self.conditioning_layers[i](embedded)
            elif self.conditioning_option == "sequential":
                hcond = self.conditioning_layers[i](hcond)
            hconds.append(hcond)
        if not reverse:
            logdet = 0.0
            for i in range(self.n_flows):
                x, ld = self.sub_layers[i](x, hconds[i])
                logdet = logdet + ld
            return x.squeeze(-1).squeeze(-1), logdet
        for i in reversed(range(self.n_flows)):
            x = self.sub_layers[i](x, hconds[i], reverse=True)
        return x.squeeze(-1).squeeze(-1)


class UnconditionalFlatCouplingFlow(nn.Module):
    """The original's: blocks of ActNorm, double coupling on each half alone, shuffle."""
    def __init__(self, m):
        super().__init__()
        self.n_flows = m["n_flows"]
        self.sub_layers = nn.ModuleList([Block(m["in_dim"], 0, m["hidden_dim"], m["hidden_depth"], "none", 0.9)
                                         for _ in range(self.n_flows)])

    def forward(self, x, cond=None, reverse=False):
        x = x[:, :, None, None]
        none = x.new_zeros(x.shape[0], 0, 1, 1)
        if not reverse:
            logdet = 0.0
            for i in range(self.n_flows):
                x, ld = self.sub_layers[i](x, none)
                logdet = logdet + ld
            return x.squeeze(-1).squeeze(-1), logdet
        for i in reversed(range(self.n_flows)):
            x = self.sub_layers[i](x, none, reverse=True)
        return x.squeeze(-1).squeeze(-1)


def write_original(model_path, out_dir):
    import os
    import h5py
    with open(model_path) as f:
        m = json.load(f)
    unconditional = m.get("cond_dim", 1) == 0
    torch.manual_seed(7)
    model = UnconditionalFlatCouplingFlow(m) if unconditional else ConditionalFlatCouplingFlow(m)
    with torch.no_grad():  # weights away from the initialisation, ActNorm "initialised", BN statistics
        for name, p in model.named_parameters():
            p.add_(0.1 * torch.randn_like(p))
            if name.endswith("norm_layer.scale"):
                p.copy_(0.5 + torch.rand_like(p))
        for name, b in model.named_buffers():
            if name.endswith("initialized"):
                b.fill_(1)
            elif name.endswith("running_mean"):
                b.copy_(0.2 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
    model.eval()
    state = {"flow." + k: v.clone() for k, v in model.state_dict().items()}
    state["first_stage_model.decoder.weight"] = torch.randn(3, 3)  # the experts, which the import leaves
    torch.save({"epoch": 3, "global_step": 120, "state_dict": state}, os.path.join(out_dir, "last.ckpt"))
    if unconditional:
        flow = {"target": "net2net.modules.flow.flatflow.UnconditionalFlatCouplingFlow",
                "params": {"in_channels": m["in_dim"], "n_flows": m["n_flows"], "hidden_dim": m["hidden_dim"],
                           "hidden_depth": m["hidden_depth"]}}
    else:
        em = m["embedder"]
        flow = {"target": "net2net.modules.flow.flatflow.ConditionalFlatCouplingFlow",
                "params": {"conditioning_dim": m["cond_dim"], "embedding_dim": m["embedding_dim"],
                           "conditioning_depth": em["depth"], "conditioning_hidden_dim": em["hidden_dim"],
                           "n_flows": m["n_flows"], "in_channels": m["in_dim"], "hidden_dim": m["hidden_dim"],
                           "hidden_depth": m["hidden_depth"], "activation": m["activation"],
                           "conditioning_option": m["conditioning"],
                           "conditioner_use_bn": em["norm"] == "batchnorm", "conditioner_use_an": em["norm"] == "actnorm"}}
    import yaml
    with open(os.path.join(out_dir, "config.yaml"), "w") as f:
        yaml.safe_dump({"model": {"base_learning_rate": 4.5e-6, "target": "net2net.models.flows.flow.Net2NetFlow",
                                  "params": {"flow_config": flow}}}, f)
    model = model.double()
    x = torch.randn(16, m["in_dim"], dtype=torch.float64) * 1.3 + 0.2
    c = torch.randn(16, max(m.get("cond_dim", 0), 0), dtype=torch.float64)
    with torch.no_grad():
        v, logdet = model(x, c)
    with h5py.File(os.path.join(out_dir, "io.h5"), "w") as f:
        for k, t in (("x", x), ("c", c), ("v", v), ("logdet", logdet)):
            f[k] = t.numpy()


def count(config_path):
    with open(config_path) as f:
        cfg = json.load(f)
    m = dict(cfg["model"])
    m.setdefault("conditioning", "none")
    m.setdefault("activation", "lrelu")
    model = ConditionalFlatCouplingFlow(m)
    print(sum(p.numel() for p in model.parameters() if p.requires_grad))


def load_mlp(py_mlp, prefix, weights, norm):
    """Our Mlp names its layers linear{k} / norm{k}; the reference's Sequential interleaves them."""
    per = 3 if norm != "none" else 2
    linears = [mod for mod in py_mlp.main if isinstance(mod, nn.Linear)]
    norms = [mod for mod in py_mlp.main if isinstance(mod, (nn.BatchNorm1d, VectorActNorm))]
    for k, lin in enumerate(linears):
        lin.weight.data.copy_(weights[f"{prefix}.linear{k}.weight"])
        lin.bias.data.copy_(weights[f"{prefix}.linear{k}.bias"])
    for k, nm in enumerate(norms):
        if isinstance(nm, nn.BatchNorm1d):
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(nm, name).data.copy_(weights[f"{prefix}.norm{k}.{name}"])
        else:
            nm.loc.data.copy_(weights[f"{prefix}.norm{k}.loc"].view(1, -1, 1, 1))
            nm.scale.data.copy_(weights[f"{prefix}.norm{k}.scale"].view(1, -1, 1, 1))
    del per


def compare(h5_path):
    import h5py
    with h5py.File(h5_path, "r") as f:
        m = json.loads(f.attrs["model_config"])
        weights = {k: torch.from_numpy(f["weights"][k][()]) for k in f["weights"].keys()}
        x, c, v = (torch.from_numpy(f[k][()]) for k in ("x", "c", "v_in"))
        ours_v, ours_logdet, ours_inverse = (torch.from_numpy(f[k][()]) for k in ("v", "logdet", "inverse"))
    torch.set_default_dtype(torch.float64)
    model = ConditionalFlatCouplingFlow(m).double().eval()
    norm = m["embedder"]["norm"]
    load_mlp(model.embedder, "embedder", weights, norm)
    for i, block in enumerate(model.sub_layers):
        p = f"block{i}"
        block.norm_layer.loc.data.copy_(weights[f"{p}.norm.loc"].view(1, -1, 1, 1))
        block.norm_layer.scale.data.copy_(weights[f"{p}.norm.scale"].view(1, -1, 1, 1))
        for j in range(2):
            load_mlp(block.coupling.s[j], f"{p}.coupling.s{j}", weights, "none")
            load_mlp(block.coupling.t[j], f"{p}.coupling.t{j}", weights, "none")
        block.shuffle.forward_shuffle_idx.copy_(weights[f"{p}.shuffle.forward_index"])
        block.shuffle.backward_shuffle_idx.copy_(weights[f"{p}.shuffle.backward_index"])
        if m["conditioning"] != "none":
            conv = model.conditioning_layers[i]
            conv.weight.data.copy_(weights[f"cond_map{i}.weight"].view(conv.weight.shape))
            conv.bias.data.copy_(weights[f"cond_map{i}.bias"])
    with torch.no_grad():
        ref_v, ref_logdet = model(x, c)
        ref_inverse = model(v, c, reverse=True)
    print(json.dumps({
        "v": (ref_v - ours_v).abs().max().item(),
        "logdet": (ref_logdet - ours_logdet).abs().max().item(),
        "inverse": (ref_inverse - ours_inverse).abs().max().item(),
    }))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "write-original":
        write_original(sys.argv[2], sys.argv[3])
    elif len(sys.argv) != 3 or sys.argv[1] not in ("count", "compare"):
        sys.exit(__doc__)
    else:
        {"count": count, "compare": compare}[sys.argv[1]](sys.argv[2])
