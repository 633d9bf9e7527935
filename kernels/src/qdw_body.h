/* edgetrain — the direct depthwise int8 convolution's loops (internal; included by src/qgemm.c
 * once per row of et_q_dwconv2d_variants, with QDW(name) naming the copy and QDW_TARGET its
 * target attribute). The same C for every row: integer sums (exact) and q_requant, so the
 * same bytes; a wider target only lets the compiler vectorise the tap and requantize loops
 * with wider registers. See src/qgemm.c for the method. */
/* acc[t] += (src[t * sw] - zp) * wv for t in [0, n): one tap over a row or a block. With stride
 * 1 the product, at most 255 * 128 = 32640 in size, is formed in int16 (exact; a 16-bit
 * multiply for the vectoriser) and added in int32; strided rows stay scalar. */
QDW_TARGET static inline void QDW(q_dw_tap)(int32_t *ET_RESTRICT acc, const uint8_t *ET_RESTRICT src, int64_t n, int64_t sw,
                            int32_t zp, int32_t wv) {
    const int16_t z = (int16_t)zp, w = (int16_t)wv;
    if (sw == 1)
        for (int64_t t = 0; t < n; t++) acc[t] += (int16_t)((int16_t)(src[t] - z) * w);
    else
        for (int64_t t = 0; t < n; t++) acc[t] += ((int32_t)src[t * sw] - zp) * wv;
}

/* y rows [oy0, oy0 + nr) of the plane from acc (row stride as) */
QDW_TARGET static void QDW(q_dw_store)(const q_dw_job *k, int64_t c, uint8_t *yp, int64_t oy0, int64_t nr, const int32_t *acc,
                       int64_t as) {
    const int64_t ow = k->p->ow, bias = k->bias ? k->bias[c] : 0;
    const float mult = k->mult[c];
    for (int64_t r = 0; r < nr; r++) {
        uint8_t *yr = yp + (oy0 + r) * ow;
        const int32_t *ar = acc + r * as;
        for (int64_t t = 0; t < ow; t++) yr[t] = q_requant(bias + ar[t], mult, k->y_zp, k->qmin, k->qmax);
    }
}

/* R input rows from iy0 into pad (wp bytes each), the zero point outside the image */
QDW_TARGET static void QDW(q_dw_pad_rows)(const q_dw_job *k, const uint8_t *xp, int64_t iy0, int64_t R, uint8_t *pad) {
    const et_conv2d_params *p = k->p;
    const int64_t wp = k->wp, c0 = p->pad_l < wp ? p->pad_l : wp, c1 = p->pad_l + p->w < wp ? p->pad_l + p->w : wp;
    const int z = k->x_zp;
    for (int64_t r = 0; r < R; r++) {
        uint8_t *d = pad + r * wp;
        const int64_t iy = iy0 + r;
        if (iy < 0 || iy >= p->h || c1 <= c0) {
            memset(d, z, (size_t)wp);
            continue;
        }
        memset(d, z, (size_t)c0);
        memcpy(d + c0, xp + iy * p->w + (c0 - p->pad_l), (size_t)(c1 - c0));
        memset(d + c1, z, (size_t)(wp - c1));
    }
}

QDW_TARGET static void QDW(q_dw_block_padded)(const q_dw_job *k, const uint8_t *xp, int64_t c, uint8_t *yp, int64_t oy0, int64_t nr,
                              uint8_t *ET_RESTRICT pad, int32_t *ET_RESTRICT acc) {
    const et_conv2d_params *p = k->p;
    const int64_t wp = k->wp, sh = p->stride_h, sw = p->stride_w, ow = p->ow;
    const int8_t *wc = k->w + c * p->kh * p->kw;
    QDW(q_dw_pad_rows)(k, xp, oy0 * sh - p->pad_t, (nr - 1) * sh + (p->kh - 1) * p->dil_h + 1, pad);
    if (sw == 1) { /* acc[r * wp + t]: one loop per tap over the whole block */
        const int64_t n = (nr - 1) * wp + ow;
        memset(acc, 0, (size_t)n * sizeof acc[0]);
        for (int64_t i = 0; i < p->kh; i++)
            for (int64_t j = 0; j < p->kw; j++)
                QDW(q_dw_tap)(acc, pad + i * p->dil_h * wp + j * p->dil_w, n, 1, k->x_zp, wc[i * p->kw + j]);
        QDW(q_dw_store)(k, c, yp, oy0, nr, acc, wp);
        return;
    }
    memset(acc, 0, (size_t)(nr * ow) * sizeof acc[0]);
    for (int64_t i = 0; i < p->kh; i++)
        for (int64_t j = 0; j < p->kw; j++)
            for (int64_t r = 0; r < nr; r++)
                QDW(q_dw_tap)(acc + r * ow, pad + (r * sh + i * p->dil_h) * wp + j * p->dil_w, ow, sw, k->x_zp,
                         wc[i * p->kw + j]);
    QDW(q_dw_store)(k, c, yp, oy0, nr, acc, ow);
}

/* Wide rows: output row oy, columns [ox0, ox0 + nb), each tap clipped to the image. */
QDW_TARGET static void QDW(q_dw_block_cols)(const q_dw_job *k, const uint8_t *xp, int64_t c, uint8_t *yp, int64_t oy, int64_t ox0,
                            int64_t nb, int32_t *ET_RESTRICT acc) {
    const et_conv2d_params *p = k->p;
    const int64_t W = p->w, sw = p->stride_w, bias = k->bias ? k->bias[c] : 0;
    const int8_t *wc = k->w + c * p->kh * p->kw;
    memset(acc, 0, (size_t)nb * sizeof acc[0]);
    for (int64_t i = 0; i < p->kh; i++) {
        const int64_t iy = oy * p->stride_h - p->pad_t + i * p->dil_h;
        if (iy < 0 || iy >= p->h) continue;
        for (int64_t j = 0; j < p->kw; j++) {
            const int64_t off = j * p->dil_w - p->pad_l;
            int64_t t0, t1;
            q_dw_cols(ox0, nb, sw, off, W, &t0, &t1);
            if (t1 > t0)
                QDW(q_dw_tap)(acc + t0, xp + iy * W + (ox0 + t0) * sw + off, t1 - t0, sw, k->x_zp, wc[i * p->kw + j]);
        }
    }
    uint8_t *yr = yp + oy * p->ow + ox0;
    for (int64_t t = 0; t < nb; t++) yr[t] = q_requant(bias + acc[t], k->mult[c], k->y_zp, k->qmin, k->qmax);
}

QDW_TARGET static void QDW(q_dw_planes)(void *ctx, int64_t p0, int64_t p1, int tid) {
    const q_dw_job *k = (const q_dw_job *)ctx;
    const et_conv2d_params *p = k->p;
    uint8_t pad[Q_DW_PAD];
    int32_t acc[Q_DW_ACC];
    (void)tid;
    for (int64_t pl = p0; pl < p1; pl++) {
        const int64_t c = pl % p->c;
        const uint8_t *xp = k->x + pl * p->h * p->w;
        uint8_t *yp = k->y + pl * p->oh * p->ow;
        if (k->rows > 0) {
            for (int64_t oy0 = 0; oy0 < p->oh; oy0 += k->rows)
                QDW(q_dw_block_padded)(k, xp, c, yp, oy0, p->oh - oy0 < k->rows ? p->oh - oy0 : k->rows, pad, acc);
            continue;
        }
        for (int64_t oy = 0; oy < p->oh; oy++)
            for (int64_t ox0 = 0; ox0 < p->ow; ox0 += Q_DW_COLS)
                QDW(q_dw_block_cols)(k, xp, c, yp, oy, ox0, p->ow - ox0 < Q_DW_COLS ? p->ow - ox0 : Q_DW_COLS, acc);
    }
}
