/* edgetrain — the stride-1 3x3 depthwise forward on large planes, dw1 (internal; included by
 * src/conv2d_depthwise.c once per x86 SIMD width; see "dw1" there for the method and its bits).
 *
 * The includer defines: DW1(f) (the copy's function name), DW1_TARGET (target attribute),
 * DW1_ROWS_MAX (output rows of the widest band: as many accumulators as fit in registers beside
 * the three taps and nine weights), V / VW (a vector of VW floats), VM (a lane mask),
 * V_SET1(f), V_ZERO(), V_FMA(a, b, c) (a * b + c, one rounding), V_LOADM(p, m) (masked-off lanes
 * read as zeros and never fault), V_STOREM(p, v, n, mo) (the first n lanes of v; the rest of
 * p untouched), MASK_COLS(c, iw) (lane l on when 0 <= c + l < iw), MASK_FIRST(n) (the first n
 * lanes), V_BN_ACT(v, a, s, act) (the fused BatchNorm + act in registers, dws_bn_act's bits).
 * Every width runs the same FMA chains in the same order, so the same bits. The header
 * undefines these names at its end, ready for the next width. */

/* Output rows oy0 .. oy0 + R - 1 of the piece at column j0 (n columns, mask mo); m: the load
 * masks of the taps kx = 0, 1, 2. Inlined with constant R. */
DW1_TARGET static inline __attribute__((always_inline)) void
DW1(dw1_band)(const float *xp, int64_t h, int64_t iw, int64_t ow, int64_t pt, int64_t c0,
              int64_t j0, int64_t n, VM mo, const VM *m, const V *wv, V bv, V av, V sv,
              int bn_vec, et_act act, float *yp, int64_t oy0, const int R) {
    V acc[DW1_ROWS_MAX];
    (void)n; /* V_STOREM's AVX-512 form needs only the mask */
    for (int r = 0; r < R; r++) acc[r] = bv;
    for (int q = 0; q < R + 2; q++) {
        const int64_t iy = oy0 - pt + q;
        V t0, t1, t2;
        if (iy >= 0 && iy < h) {
            const float *row = xp + iy * iw + c0;
            t0 = V_LOADM(row, m[0]);
            t1 = V_LOADM(row + 1, m[1]);
            t2 = V_LOADM(row + 2, m[2]);
        } else {
            t0 = t1 = t2 = V_ZERO();
        }
        for (int ky = 2; ky >= 0; ky--) { /* the output whose kernel row ky this input row is */
            const int r = q - ky;
            if (r < 0 || r >= R) continue;
            acc[r] = V_FMA(wv[3 * ky], t0, acc[r]);
            acc[r] = V_FMA(wv[3 * ky + 1], t1, acc[r]);
            acc[r] = V_FMA(wv[3 * ky + 2], t2, acc[r]);
        }
    }
    for (int r = 0; r < R; r++)
        V_STOREM(yp + (oy0 + r) * ow + j0, bn_vec ? V_BN_ACT(acc[r], av, sv, act) : acc[r], n, mo);
}

/* Planes [p0, p1) of the output (plane q = image q / oc, channel q % oc), in bands of the
 * widest row count left (DW1_ROWS_MAX, then 4, 2, 1). */
DW1_TARGET static void DW1(dw1_fwd_planes)(void *ctx, int64_t p0, int64_t p1, int tid) {
    const dw_job *k = (const dw_job *)ctx;
    const et_conv2d_params *p = k->p;
    const int64_t mult = p->oc / p->c, h = p->h, iw = p->w, oh = p->oh, ow = p->ow;
    const int64_t pt = p->pad_t, pl = p->pad_l, xs = h * iw, ys = oh * ow;
    const int bn_vec = p->bn_scale && (p->act == ET_ACT_NONE || p->act == ET_ACT_RELU ||
                                       p->act == ET_ACT_RELU6);
    (void)tid;
    for (int64_t q = p0; q < p1; q++) {
        const int64_t i = q / p->oc, o = q % p->oc;
        const float *xp = k->x + (i * p->c + o / mult) * xs, *wo = k->w + o * 9;
        float *yp = k->out + q * ys;
        V wv[9];
        for (int t = 0; t < 9; t++) wv[t] = V_SET1(wo[t]);
        const V bv = V_SET1(k->b ? k->b[o] : 0.0f);
        const V av = V_SET1(bn_vec ? p->bn_scale[o] : 0.0f);
        const V sv = V_SET1(bn_vec ? p->bn_shift[o] : 0.0f);
        for (int64_t oy0 = 0; oy0 < oh;) {
            const int64_t left = oh - oy0;
            const int R = left >= DW1_ROWS_MAX ? DW1_ROWS_MAX : left >= 4 ? 4 : left >= 2 ? 2 : 1;
            for (int64_t j0 = 0; j0 < ow; j0 += VW) {
                const int64_t c0 = j0 - pl, n = ow - j0 < VW ? ow - j0 : VW;
                const VM mo = MASK_FIRST(n);
                const VM m[3] = {MASK_COLS(c0, iw), MASK_COLS(c0 + 1, iw), MASK_COLS(c0 + 2, iw)};
#define DW1_BAND(rows)                                                                           \
    DW1(dw1_band)(xp, h, iw, ow, pt, c0, j0, n, mo, m, wv, bv, av, sv, bn_vec, p->act, yp, oy0, rows)
#if DW1_ROWS_MAX == 8
                if (R == 8) DW1_BAND(8);
                else
#endif
                if (R == 4) DW1_BAND(4);
                else if (R == 2) DW1_BAND(2);
                else DW1_BAND(1);
#undef DW1_BAND
            }
            oy0 += R;
        }
        if (!bn_vec && (p->act != ET_ACT_NONE || p->bn_scale)) et_conv_epilogue_(p, o, 0.0f, yp, ys);
    }
}

#undef DW1
#undef DW1_TARGET
#undef DW1_ROWS_MAX
#undef V
#undef VW
#undef VM
#undef V_SET1
#undef V_ZERO
#undef V_FMA
#undef V_LOADM
#undef V_STOREM
#undef MASK_COLS
#undef MASK_FIRST
#undef V_BN_ACT
