"""
Generates the comparison cases in this folder (case_seed*.json) for test/metrics.test.ts.
Independent reference: numpy, scikit-learn (roc_auc_score, auc), scikit-image (measure.label,
regionprops) and scipy (ndimage.label), following MVTec AD's AUPRO code and HETMM's PRO.
Run: /usr/bin/python3 test/data/metrics/generate.py test/data/metrics   (Debian python3-numpy,
python3-sklearn, python3-scipy, python3-skimage).
"""
import json, sys, bisect
import numpy as np
from sklearn.metrics import roc_auc_score, auc
from skimage import measure
from scipy.ndimage import label as ndlabel

def pro_hetmm(masks, amaps, steps=300, limit=0.3):
    # HETMM's PRO: sklearn.metrics.auc over the kept points in threshold order, in percent
    ths = np.linspace(amaps.min(), amaps.max(), steps)
    pros, fprs = [], []
    inv = 1 - masks
    regions = []
    for i, m in enumerate(masks):
        lab = measure.label(m, connectivity=2)
        for r in measure.regionprops(lab):
            regions.append((i, r.coords, r.area))
    for th in ths:
        b = amaps > th
        pro = [b[i][c[:,0], c[:,1]].sum() / (a + 1e-5) for i, c, a in regions]
        fpr = np.logical_and(inv, b).sum() / inv.sum()
        pros.append(np.mean(pro)); fprs.append(fpr)
    pros, fprs = np.array(pros), np.array(fprs)
    k = fprs <= limit
    f, p = fprs[k], pros[k]
    f = (f - f.min()) / (f.max() - f.min() + 1e-5)
    p = (p - p.min()) / (p.max() - p.min() + 1e-5)
    return auc(f, p) * 100

def trapezoid(x, y, x_max):
    correction = 0.
    if x_max not in x:
        ins = bisect.bisect(x, x_max)
        y_interp = y[ins-1] + (y[ins]-y[ins-1]) * (x_max - x[ins-1]) / (x[ins]-x[ins-1])
        correction = 0.5 * (y_interp + y[ins-1]) * (x_max - x[ins-1])
    m = x <= x_max
    x = x[m]; y = y[m]
    return np.sum(0.5*(y[1:]+y[:-1])*(x[1:]-x[:-1])) + correction

def aupro(masks, amaps, limit=0.3):
    # MVTec AD's compute_pro + trapezoid(x_max=limit) / limit
    st = np.ones((3,3), int)
    n_ok = 0; n_reg = 0
    fp = np.zeros(amaps.shape, np.uint32); pc = np.zeros(amaps.shape, np.float64)
    for i, g in enumerate(masks):
        lab, n = ndlabel(g, st)
        n_reg += n; ok = lab == 0; n_ok += ok.sum(); fp[i, ok] = 1
        for k in range(n):
            r = lab == k+1; pc[i, r] = 1. / r.sum()
    s = amaps.ravel().copy(); fp = fp.ravel(); pc = pc.ravel()
    o = np.argsort(s, kind='stable')[::-1]
    s = s[o]; fp = fp[o]; pc = pc[o]
    fprs = np.cumsum(fp, dtype=np.float64) / n_ok; pros = np.cumsum(pc) / n_reg
    keep = np.append(np.diff(s) != 0, True)
    fprs = np.clip(fprs[keep], 0, 1); pros = np.clip(pros[keep], 0, 1)
    fprs = np.concatenate(([0.], fprs, [1.])); pros = np.concatenate(([0.], pros, [1.]))
    return trapezoid(fprs, pros, limit) / limit

def f1max(labels, scores):
    P = labels.sum(); best = (-1, None)
    for t in np.unique(scores)[::-1]:
        pred = scores >= t; tp = (pred & (labels == 1)).sum(); fp = (pred & (labels == 0)).sum()
        f1 = 2 * tp / (tp + fp + P)
        if f1 > best[0]: best = (f1, t)
    return {'f1': float(best[0]), 'threshold': float(best[1])}

def make(seed, M, H, W, quant, n_normal):
    rng = np.random.default_rng(seed)
    maps = rng.random((M, H, W))
    masks = np.zeros((M, H, W), np.uint8)
    for i in range(n_normal, M):
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, H), rng.integers(0, W)
            h, w = rng.integers(1, 6), rng.integers(1, 6)
            masks[i, y:y+h, x:x+w] = 1
        # a diagonal pair: one 8-connected region, two 4-connected ones
        y, x = rng.integers(0, H - 1), rng.integers(0, W - 1)
        masks[i, y, x] = 1; masks[i, y + 1, x + 1] = 1
    maps += 0.35 * masks + 0.1 * rng.standard_normal((M, H, W))
    maps = np.round(maps * quant) / quant  # dyadic: exact in float32, many ties
    labels = (masks.reshape(M, -1).max(1) > 0).astype(np.int64)
    scores = np.round((maps.reshape(M, -1).max(1) + 0.2 * rng.standard_normal(M)) * 16) / 16
    exp = {
        'image_auroc': float(roc_auc_score(labels, scores)),
        'pixel_auroc': float(roc_auc_score(masks.ravel(), maps.ravel())),
        'aupro_0.3': float(aupro(masks, maps, 0.3)),
        'aupro_0.05': float(aupro(masks, maps, 0.05)),
        'pro_hetmm_300_0.3': float(pro_hetmm(masks, maps, 300, 0.3)),
        'pro_hetmm_17_0.5': float(pro_hetmm(masks, maps, 17, 0.5)),
        'f1_image': f1max(labels, scores),
        'f1_pixel': f1max(masks.ravel().astype(np.int64), maps.ravel()),
    }
    return {
        'generator': 'numpy %s seed %d; expected from scikit-learn/scikit-image/scipy (see README.md)' % (np.__version__, seed),
        'shape': [M, H, W],
        'maps': [float(v) for v in maps.ravel()],
        'masks': [int(v) for v in masks.ravel()],
        'labels': [int(v) for v in labels],
        'scores': [float(v) for v in scores],
        'expected': exp,
    }

out = sys.argv[1]
for seed, (M, H, W, q, nn) in {11: (8, 20, 16, 64, 3), 12: (6, 13, 17, 16, 2), 13: (9, 16, 24, 1024, 4), 14: (5, 12, 12, 8, 1)}.items():
    case = make(seed, M, H, W, q, nn)
    json.dump(case, open(f'{out}/case_seed{seed}.json', 'w'), separators=(',', ':'))
    print(seed, case['expected'])
