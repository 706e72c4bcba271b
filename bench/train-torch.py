#!/usr/bin/env python3
"""PyTorch eager CPU training baseline for `npm run bench:train`.

An independent, compact PyTorch implementation of OpenELM exactly as Hugging Face's
`modeling_openelm.py` / `configuration_openelm.py` (apple/OpenELM) define it, trained on
random tokens, so the TypeScript trainer's throughput can be compared with PyTorch's in the
same run on the same machine.

Usage
-----
    python3 bench/train-torch.py --threads 2 --steps 5 --warmup-steps 1 --json
    python3 bench/train-torch.py --threads 1 --steps 3          # human-readable summary
    python3 bench/train-torch.py --check-grads DIR [--batch-file FILE] [--grads-out FILE] [--json]

If the `python3` that runs the script cannot import torch (e.g. a pyenv interpreter in
front of Debian's `python3-torch`), the script re-executes itself once with /usr/bin/python3
(or $TORCH_PYTHON) and says so on stderr.

Model (defaults = the fixed benchmark config)
---------------------------------------------
vocab 32000, model_dim 256, 8 layers, head_dim 32, num_gqa_groups 4, qkv_multipliers
(0.5, 1.0), ffn_multipliers (0.5, 4.0), ffn_dim_divisor 64, SwiGLU, q/k RMSNorm on,
tied input/output embedding, RoPE base 10000, RMSNorm eps 1e-6, float32.

Layer-wise scaling, as configuration_openelm.py computes it:
    mult_i      = round(linspace(a, b, L)[i], 2)         # numpy linspace: start + i*step, last = stop
    query_dim_i = int(make_divisible(model_dim * qkv_mult_i, head_dim * num_gqa_groups))
    nQ_i        = query_dim_i // head_dim
    nKV_i       = nQ_i // num_gqa_groups
    ffn_dim_i   = int(make_divisible(ffn_mult_i * model_dim, ffn_dim_divisor))
    make_divisible(v, d) = max(d, int(v + d/2) // d * d), plus d if that is < 0.9 v
(Note the query-width divisor is head_dim * num_gqa_groups, not head_dim.)
For the benchmark config: nQ = [4,8,8,8,8,8,8,8], nKV = [1,2,2,2,2,2,2,2],
ffn_dims = [128,256,384,512,640,768,896,1024], 12,964,608 parameters (tied head counted once),
identical to src/config (parseConfig + numParameters).

Per layer (pre-norm):  h += out_proj(attn(attn_norm(h)));  h += proj_2(silu(g) * u)
with (g | u) = proj_1(ffn_norm(h)) split in halves (gate first). Attention: fused qkv_proj
-> [B, nQ+2nKV, T, hd] split q|k|v -> per-head RMSNorm on q and k -> RoPE (rotate-half,
inv_freq = 1/10000^(2j/hd), cos/sin of cat(theta, theta)) -> K/V repeat_interleave to nQ
heads (as HF does) -> causal softmax(q k^T / sqrt(hd)) v -> out_proj. Final RMSNorm, logits =
h @ token_embeddings^T, loss = mean cross-entropy of logits[:, :-1] against tokens[:, 1:].
Initialisation follows HF `reset_parameters` (normal, std in_features^-0.5 for Linear,
dim^-0.5 for the embedding, model_dim^-0.5 * (2L)^-0.5 for out_proj and proj_2; norms 1).

Attention kernel: torch.nn.functional.scaled_dot_product_attention is used if this torch has
it (torch >= 2.0; is_causal=True); otherwise (e.g. Debian's torch 1.13) the plain eager
path: (q * hd^-0.5) @ k^T, masked_fill(causal, -inf), softmax(float32), @ v. The JSON field
"attention" says which one ran.

Training step (timed with time.perf_counter, batch generation excluded):
    forward, loss, backward, clip_grad_norm_(1.0), AdamW step, zero_grad(set_to_none=True)
AdamW: lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on 2-D tensors only (the
embedding/head and every Linear weight), 0 on the 1-D norm weights; torch.optim.AdamW with
its default implementation (on torch 1.13 CPU: the single-tensor loop, foreach=False).
Batches: batch 8 x seq 256 random token ids in [0, vocab) from torch.Generator seeded with
--seed (default 0), a fresh batch every step. torch.set_num_threads(--threads).

Throughput and FLOPs (the formula the TypeScript side must use too)
--------------------------------------------------------------------
    tokens_per_step = batch * seq                      (all positions processed, 2048)
    tokens_per_s    = tokens_per_step * timed_steps / sum(step seconds)
    N_matmul        = sum_i [ (nQ_i + 2 nKV_i) hd d      (qkv_proj)
                              + nQ_i hd d                (out_proj)
                              + 2 ffn_i d + ffn_i d ]    (proj_1, proj_2)
                      + vocab * d                        (output head; tied, still a matmul)
    flops_per_token = 6 * N_matmul + 12 * seq * sum_i (nQ_i * hd)
    gflops          = flops_per_token * tokens_per_s / 1e9
6 = 2 (multiply-add) x 3 (forward + two backward matmuls). The attention term is the
PaLM/Chinchilla convention: QK^T and PV, 2 FLOPs per MAC, x3 for training, over the full
seq x seq score matrix (the causal mask is NOT halved out). The embedding gather, norms,
RoPE, softmax, SiLU, loss, clipping and the optimizer are not counted.
Benchmark config: N_matmul = 4,767,744 + 8,192,000 = 12,959,744;
flops_per_token = 77,758,464 + 12*256*1920 = 83,656,704.

JSON output (--json, one line on stdout)
---------------------------------------
{"tokens_per_s", "step_ms": [timed steps], "warmup_ms": [...], "params", "torch_version",
 "threads", "per_layer": {"num_query_heads", "num_kv_heads", "ffn_dims"}, "flops_per_token",
 "gflops", "peak_rss_mb" (resource.getrusage ru_maxrss, whole process), "attention",
 "blas" (the BLAS/LAPACK libraries mapped into the process, from /proc/self/maps),
 "losses": [per step, warmup included], "config": {...}, "python", "batch", "seq", "steps",
 "warmup_steps"}

Which torch, which BLAS (read before trusting a number)
-------------------------------------------------------
Debian's python3-torch (1.13.1) is built with BLAS_INFO=generic and links libblas.so.3,
i.e. whatever Debian's BLAS alternative points to. With only libblas3 installed that is the
single-threaded *reference* Fortran BLAS, and every Linear runs at ~4 GFLOP/s. The "blas"
field shows what was loaded. Measured on a 2-core Intel Xeon (KVM, AVX-512), this config:
    Debian torch 1.13 + reference libblas3      ~45 tokens/s (1 or 2 threads alike)
    Debian torch 1.13 + OpenBLAS 0.3.21 pthread ~470 (1 thread), ~610 (2 threads)
    pip torch 2.x wheel (MKL, SDPA)             ~750-870 (1 thread), ~1300-1650 (2 threads)
OpenBLAS can be used without touching the system:
    apt-get download libopenblas0-pthread && dpkg -x libopenblas0-pthread_*.deb ob
    LD_LIBRARY_PATH=$PWD/ob/usr/lib/x86_64-linux-gnu/openblas-pthread python3 bench/train-torch.py ...
(OPENBLAS_NUM_THREADS defaults to --threads, set before torch loads.) With 2 threads on 2
cores any other busy process stalls the OpenMP pools: single steps then take 3-10x longer,
so run on an idle machine and look at the spread of "step_ms", not only the mean.

--check-grads DIR
-----------------
Loads an HF-layout checkpoint folder (DIR/config.json + DIR/model.safetensors, or the shards
named by DIR/model.safetensors.index.json; F32/F16/BF16, computed in float32; parsed by hand:
u64-LE header length, JSON header, raw little-endian data) and a batch
(--batch-file FILE, default DIR/batch.json: either [[ids...], ...] or {"input_ids": [[...]],
"labels": [[...]] (optional, defaults to input_ids)}), runs forward + backward in float32
and prints the loss, the global grad L2 norm and each parameter's grad L2 norm (JSON with
--json). --grads-out FILE writes every gradient (F32, HF names) as a safetensors file.
No optimizer step is taken. Other keys of a batch object are ignored (so an expected.json that
carries input_ids/labels can serve as the batch file).

The loss is the mean cross-entropy of logits[:, :-1] against labels[:, 1:]; a negative label
(-100 as in HF, or -1, the TypeScript trainer's IGNORE) is ignored: no term, and the mean is
over the counted positions only (padding). Every variant modeling_openelm.py supports is
built from config.json: share_input_output_layers false (a separate lm_head.weight [V, d]),
ffn_with_glu false (proj_1 [F, d], proj_2(act(proj_1 x))), normalize_qk_projections false (no
q_norm / k_norm tensors), any num_gqa_groups (K/V repeat_interleave'd nQ/nKV times), any
head_dim and rope_freq_constant, and activation_fn_name as HF's ACT2FN: swish/silu, gelu
(exact erf), gelu_new/gelu_fast/gelu_pytorch_tanh (tanh approximation), quick_gelu
(x * sigmoid(1.702 x)), relu, sigmoid, tanh. Golden fixtures made this way:
test/fixtures/train-variants/ (make.py there regenerates them).
"""

import argparse
import array
import json
import math
import os
import platform
import resource
import struct
import sys
import time


def _import_torch():
    try:
        import torch  # noqa: F401
        return torch
    except ImportError:
        pass
    if os.environ.get("_TRAIN_TORCH_REEXEC") != "1":
        for cand in [os.environ.get("TORCH_PYTHON"), "/usr/bin/python3"]:
            if cand and os.path.exists(cand) and os.path.realpath(cand) != os.path.realpath(sys.executable):
                print(f"train-torch.py: torch not importable from {sys.executable}; re-running with {cand}",
                      file=sys.stderr)
                os.environ["_TRAIN_TORCH_REEXEC"] = "1"
                os.execv(cand, [cand, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit("train-torch.py: PyTorch is not installed (apt-get install python3-torch, or pip install torch)")


def _preparse_threads():
    # OpenBLAS sizes its own thread pool from the environment when it is loaded; torch's
    # set_num_threads only reaches it when torch itself was built against OpenBLAS. Set it
    # before torch is imported so a (pthread) OpenBLAS libblas uses exactly --threads.
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return str(os.cpu_count() or 1)


os.environ.setdefault("OPENBLAS_NUM_THREADS", _preparse_threads())
torch = _import_torch()
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def loaded_blas():
    """The BLAS/LAPACK shared objects mapped into this process (torch 1.13 from Debian is
    built with BLAS_INFO=generic and links libblas.so.3, i.e. whatever the Debian
    alternative points to: reference BLAS unless OpenBLAS/BLIS/MKL is installed)."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                name = os.path.basename(path)
                if any(k in name for k in ("blas", "lapack", "mkl_", "blis")):
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    return sorted(libs)

# ----------------------------------------------------------------------------- config


def make_divisible(v, divisor=8, min_value=None):
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def linspace(start, stop, num):
    """numpy.linspace(start, stop, num) in float64, element for element (start + i*step, last = stop)."""
    if num == 1:
        return [float(start)]
    step = (stop - start) / (num - 1)
    out = [i * step + start for i in range(num)] if step != 0 else [i / (num - 1) * (stop - start) + start for i in range(num)]
    out[-1] = float(stop)
    return out


def per_layer(mult, n_layers, name):
    if isinstance(mult, (int, float)):
        return [mult] * n_layers
    if len(mult) == 2:
        return [round(v, 2) for v in linspace(mult[0], mult[1], n_layers)]
    if name == "ffn_multipliers" and len(mult) == n_layers:
        return list(mult)
    raise ValueError(f"{name}: expected a number, [first, last]" + (" or one per layer" if name == "ffn_multipliers" else "")
                     + f", got {mult!r}")


DEFAULT_CONFIG = dict(
    vocab_size=32000, max_context_length=256, num_transformer_layers=8, model_dim=256, head_dim=32,
    qkv_multipliers=[0.5, 1.0], num_gqa_groups=4, ffn_multipliers=[0.5, 4.0], ffn_with_glu=True,
    ffn_dim_divisor=64, activation_fn_name="swish", normalize_qk_projections=True,
    share_input_output_layers=True, rope_freq_constant=10000, rope_max_length=4096,
)


class Config:
    """OpenELMConfig's fields plus the per-layer shapes its __post_init__ derives."""

    def __init__(self, **kw):
        c = dict(DEFAULT_CONFIG)
        c.update({k: v for k, v in kw.items() if k in DEFAULT_CONFIG or k in ("num_query_heads", "num_kv_heads")})
        for k in DEFAULT_CONFIG:
            setattr(self, k, c[k])
        L, d, hd, g = self.num_transformer_layers, self.model_dim, self.head_dim, self.num_gqa_groups
        head_multiple_of = g if g is not None else 2
        qkv_mult = per_layer(self.qkv_multipliers, L, "qkv_multipliers")
        query_dims = [int(make_divisible(d * m, divisor=hd * head_multiple_of)) for m in qkv_mult]
        for q in query_dims:
            if q % hd:
                raise ValueError(f"query dim {q} not divisible by head_dim {hd}")
        self.num_query_heads = [q // hd for q in query_dims]
        self.num_kv_heads = [q // g for q in self.num_query_heads]
        for q, k in zip(self.num_query_heads, self.num_kv_heads):
            assert k > 0 and q % k == 0, (q, k)
        self.ffn_multipliers = per_layer(self.ffn_multipliers, L, "ffn_multipliers")
        self.ffn_dims = [int(make_divisible(m * d, divisor=self.ffn_dim_divisor)) for m in self.ffn_multipliers]
        # HF writes the expanded head lists into config.json; they must match the recomputation.
        for key in ("num_query_heads", "num_kv_heads"):
            given = kw.get(key)
            if isinstance(given, list) and given != getattr(self, key):
                raise ValueError(f"config {key}={given} but layer-wise scaling gives {getattr(self, key)}")

    def as_dict(self):
        out = {k: getattr(self, k) for k in DEFAULT_CONFIG}
        out.update(num_query_heads=self.num_query_heads, num_kv_heads=self.num_kv_heads, ffn_dims=self.ffn_dims)
        return out


def matmul_params(cfg):
    d, hd = cfg.model_dim, cfg.head_dim
    n = 0
    for q, kv, f in zip(cfg.num_query_heads, cfg.num_kv_heads, cfg.ffn_dims):
        n += (q + 2 * kv) * hd * d + q * hd * d + (2 if cfg.ffn_with_glu else 1) * f * d + f * d
    return n + cfg.vocab_size * d


def flops_per_token(cfg, seq):
    return 6 * matmul_params(cfg) + 12 * seq * sum(q * cfg.head_dim for q in cfg.num_query_heads)


# ----------------------------------------------------------------------------- model
# Module and parameter names mirror modeling_openelm.py, so state_dict keys are HF's.


class RMSNorm(nn.Module):
    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg, i):
        super().__init__()
        hd, d = cfg.head_dim, cfg.model_dim
        self.nq, self.nkv, self.hd = cfg.num_query_heads[i], cfg.num_kv_heads[i], hd
        self.qkv_proj = nn.Linear(d, (self.nq + 2 * self.nkv) * hd, bias=False)
        if cfg.normalize_qk_projections:
            self.q_norm, self.k_norm = RMSNorm(hd), RMSNorm(hd)
        else:
            self.q_norm = self.k_norm = None
        self.out_proj = nn.Linear(self.nq * hd, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        qkv = self.qkv_proj(x).reshape(B, T, self.nq + 2 * self.nkv, self.hd).transpose(1, 2)
        q, k, v = qkv.split([self.nq, self.nkv, self.nkv], dim=1)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.nq // self.nkv
        if g != 1:
            k = k.repeat_interleave(g, dim=1)
            v = v.repeat_interleave(g, dim=1)
        if HAS_SDPA:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = torch.matmul(q * (self.hd ** -0.5), k.transpose(-1, -2))
            s = s.masked_fill(mask, float("-inf"))
            o = torch.matmul(torch.softmax(s.float(), dim=-1).type_as(v), v)
        return self.out_proj(o.transpose(1, 2).reshape(B, T, self.nq * self.hd))


class FFN(nn.Module):
    # HF transformers' ACT2FN, for the names OpenELM configs use: "gelu" is the exact (erf) GELU,
    # "gelu_new" / "gelu_fast" / "gelu_pytorch_tanh" the tanh approximation (one formula, written
    # three ways in activations.py), "quick_gelu" x * sigmoid(1.702 x), "swish" = "silu".
    ACTS = {"swish": F.silu, "silu": F.silu, "relu": F.relu, "gelu": F.gelu,
            "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
            "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
            "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
            "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
            "sigmoid": torch.sigmoid, "tanh": torch.tanh}

    def __init__(self, cfg, i):
        super().__init__()
        f, d = cfg.ffn_dims[i], cfg.model_dim
        self.glu = cfg.ffn_with_glu
        self.proj_1 = nn.Linear(d, (2 if self.glu else 1) * f, bias=False)
        self.proj_2 = nn.Linear(f, d, bias=False)
        if cfg.activation_fn_name not in self.ACTS:
            raise ValueError(f"unsupported activation_fn_name {cfg.activation_fn_name!r}")
        self.act = self.ACTS[cfg.activation_fn_name]

    def forward(self, x):
        y = self.proj_1(x)
        if self.glu:
            gate, up = y.chunk(2, dim=-1)
            return self.proj_2(self.act(gate) * up)
        return self.proj_2(self.act(y))


class Layer(nn.Module):
    def __init__(self, cfg, i):
        super().__init__()
        self.attn = Attention(cfg, i)
        self.ffn = FFN(cfg, i)
        self.ffn_norm = RMSNorm(cfg.model_dim)
        self.attn_norm = RMSNorm(cfg.model_dim)

    def forward(self, h, cos, sin, mask):
        h = h + self.attn(self.attn_norm(h), cos, sin, mask)
        return h + self.ffn(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embeddings = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.layers = nn.ModuleList(Layer(cfg, i) for i in range(cfg.num_transformer_layers))
        self.norm = RMSNorm(cfg.model_dim)


class OpenELM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = Transformer(cfg)
        self.lm_head = None if cfg.share_input_output_layers else nn.Linear(cfg.model_dim, cfg.vocab_size, bias=False)
        hd = cfg.head_dim
        inv_freq = 1.0 / (cfg.rope_freq_constant ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        n = max(cfg.rope_max_length, cfg.max_context_length)
        theta = torch.einsum("i,j->ij", torch.arange(n, dtype=torch.float32), inv_freq)
        emb = torch.cat((theta, theta), dim=-1)
        self.register_buffer("rope_cos", emb.cos(), persistent=False)
        self.register_buffer("rope_sin", emb.sin(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        cfg = self.cfg
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, m.in_features ** -0.5)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, m.embedding_dim ** -0.5)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)
        std = cfg.model_dim ** -0.5 * (2 * cfg.num_transformer_layers) ** -0.5
        for name, p in self.named_parameters():
            if name.endswith("out_proj.weight") or name.endswith("ffn.proj_2.weight"):
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        T = ids.shape[1]
        cos, sin = self.rope_cos[None, None, :T], self.rope_sin[None, None, :T]
        mask = torch.ones(T, T, dtype=torch.bool).triu_(1)
        h = self.transformer.token_embeddings(ids)
        for layer in self.transformer.layers:
            h = layer(h, cos, sin, mask)
        h = self.transformer.norm(h)
        w = self.transformer.token_embeddings.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(h, w)

    def loss(self, ids, labels=None):
        """Mean CE of logits[:, :-1] against labels[:, 1:] (HF OpenELMForCausalLM's shift). A
        negative label (HF's -100, the TypeScript trainer's IGNORE = -1) is ignored: it adds
        nothing and the mean is over the remaining positions (CrossEntropyLoss(ignore_index=-100))."""
        labels = ids if labels is None else labels
        labels = labels.masked_fill(labels < 0, -100)
        logits = self(ids)
        V = logits.shape[-1]
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)


# ----------------------------------------------------------------------------- safetensors

_ST_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.int16, 2),
              "F64": (torch.float64, 8)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {info['dtype']}")
        dt, size = _ST_DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        count = (e - b) // size
        t = torch.frombuffer(bytearray(data[base + b:base + e]), dtype=dt, count=count) if count else torch.empty(0, dtype=dt)
        if info["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(info["shape"]).float()
    return out


def write_safetensors(path, tensors):
    header, chunks, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().to(torch.float32).contiguous().cpu()
        try:
            raw = t.numpy().tobytes()
        except (RuntimeError, ImportError):  # torch without numpy
            raw = array.array("f", t.flatten().tolist()).tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def check_grads(args):
    with open(os.path.join(args.check_grads, "config.json")) as f:
        cfg = Config(**json.load(f))
    model = OpenELM(cfg)
    single = os.path.join(args.check_grads, "model.safetensors")
    if os.path.exists(single):
        sd = read_safetensors(single)
    else:  # sharded: model.safetensors.index.json {"weight_map": {name: shard file}}
        with open(os.path.join(args.check_grads, "model.safetensors.index.json")) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        sd = {}
        for shard in shards:
            sd.update(read_safetensors(os.path.join(args.check_grads, shard)))
    if cfg.share_input_output_layers:
        sd.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        sys.exit(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")
    with open(args.batch_file or os.path.join(args.check_grads, "batch.json")) as f:
        b = json.load(f)
    ids = torch.tensor(b["input_ids"] if isinstance(b, dict) else b, dtype=torch.long)
    labels = torch.tensor(b["labels"], dtype=torch.long) if isinstance(b, dict) and "labels" in b else None
    if ids.dim() == 1:
        ids = ids[None]
        labels = labels[None] if labels is not None else None
    loss = model.loss(ids, labels)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    norms = {n: float(g.norm()) for n, g in grads.items()}
    total = math.sqrt(sum(v * v for v in norms.values()))
    if args.grads_out:
        write_safetensors(args.grads_out, grads)
    res = {"loss": loss.item(), "grad_norm": total, "grad_norms": norms, "tokens": list(ids.shape),
           "params": sum(p.numel() for p in model.parameters()), "torch_version": torch.__version__}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"loss {res['loss']:.6f}  grad norm {total:.6f}  ({ids.shape[0]}x{ids.shape[1]} tokens)")
        for n, v in norms.items():
            print(f"  {n:50s} {v:.6e}")


# ----------------------------------------------------------------------------- benchmark


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = Config(vocab_size=args.vocab, model_dim=args.model_dim, num_transformer_layers=args.layers,
                 head_dim=args.head_dim, num_gqa_groups=args.gqa_groups, ffn_dim_divisor=args.ffn_dim_divisor,
                 qkv_multipliers=[0.5, 1.0], ffn_multipliers=[0.5, 4.0], max_context_length=args.seq)
    model = OpenELM(cfg).float().train()
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    decay = [p for p in params if p.dim() == 2]
    no_decay = [p for p in params if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed)
    step_ms, warm_ms, losses = [], [], []
    for step in range(args.warmup_steps + args.steps):
        ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=gen)
        t0 = time.perf_counter()
        loss = model.loss(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = (time.perf_counter() - t0) * 1e3
        losses.append(loss.item())
        (warm_ms if step < args.warmup_steps else step_ms).append(dt)
        if not args.json and not args.quiet:
            tag = "warmup" if step < args.warmup_steps else "step"
            print(f"  {tag} {step + 1:3d}  loss {losses[-1]:.4f}  {dt:9.1f} ms", file=sys.stderr, flush=True)
    tok_step = args.batch * args.seq
    tps = tok_step * len(step_ms) / (sum(step_ms) / 1e3) if step_ms else 0.0
    fpt = flops_per_token(cfg, args.seq)
    res = {
        "tokens_per_s": tps, "step_ms": step_ms, "warmup_ms": warm_ms, "params": n_params,
        "torch_version": torch.__version__, "threads": args.threads,
        "per_layer": {"num_query_heads": cfg.num_query_heads, "num_kv_heads": cfg.num_kv_heads,
                      "ffn_dims": cfg.ffn_dims},
        "flops_per_token": fpt, "gflops": fpt * tps / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "attention": "sdpa" if HAS_SDPA else "matmul-softmax", "blas": loaded_blas(),
        "losses": losses, "batch": args.batch, "seq": args.seq, "steps": args.steps,
        "warmup_steps": args.warmup_steps, "config": cfg.as_dict(),
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
    }
    if args.json:
        print(json.dumps(res))
        return
    sm = sorted(step_ms)
    med = sm[len(sm) // 2] if sm else float("nan")
    print(f"PyTorch {torch.__version__} eager CPU training, {args.threads} thread(s), attention: {res['attention']}")
    print(f"BLAS: {', '.join(res['blas']) or 'unknown'}")
    print(f"model: {n_params:,} params, {cfg.num_transformer_layers} layers, d={cfg.model_dim}, hd={cfg.head_dim}, "
          f"vocab {cfg.vocab_size}")
    print(f"  query heads {cfg.num_query_heads}")
    print(f"  kv heads    {cfg.num_kv_heads}")
    print(f"  ffn dims    {cfg.ffn_dims}")
    print(f"batch {args.batch} x seq {args.seq} = {tok_step} tokens/step, {args.warmup_steps} warmup + {args.steps} timed steps")
    if sm:
        print(f"step ms: median {med:.1f}, min {sm[0]:.1f}, max {sm[-1]:.1f}")
    print(f"tokens/s {tps:.1f}   {fpt / 1e6:.2f} MFLOP/token -> {res['gflops']:.2f} GFLOP/s   "
          f"peak RSS {res['peak_rss_mb']:.0f} MB")
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} (ln V = {math.log(cfg.vocab_size):.4f})")


def main():
    ap = argparse.ArgumentParser(description="PyTorch eager CPU training baseline for OpenELM (see header).")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--quiet", action="store_true", help="no per-step lines (human mode)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--model-dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--gqa-groups", type=int, default=4)
    ap.add_argument("--ffn-dim-divisor", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--check-grads", metavar="DIR", help="load DIR/config.json + DIR/model.safetensors, print loss/grads")
    ap.add_argument("--batch-file", "--batch-json", dest="batch_file", metavar="FILE",
                    help="batch for --check-grads (default DIR/batch.json)")
    ap.add_argument("--grads-out", metavar="FILE", help="with --check-grads: write gradients as safetensors")
    args = ap.parse_args()
    if args.check_grads:
        torch.set_num_threads(args.threads)
        check_grads(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
