/* edgetrain — the body of the BatchNorm SIMD rows (batchnorm_simd.c includes it once per ISA).
 *
 * The includer defines: BN_NAME(f) (the row's function name), BN_TARGET (target attribute),
 * VD / WD (a vector of WD doubles; WD divides 8), BN_CH (vectors of accumulators kept in
 * registers over the images), D_LD (WD floats widened to double), D_LDD /
 * D_STD (WD doubles), D_ADD, D_SUB, D_MUL, D_SET; VF / WF (a vector of WF floats), F_LD, F_ST,
 * F_ADD, F_SUB, F_MUL, F_SET; for the fused relu / relu6: D_LDM(g, t, act) (WD floats of dy
 * masked from t, widened), F_MASK(g, t, act) and F_ACT(v, act) on VF vectors (et_bn_mask_ and
 * et_bn_act_ per lane); D_DIV, D_SQRT (WD doubles), D_STF(p, v) (WD doubles stored as floats).
 * Every lane does __ref's operation (batchnorm.c) on its element,
 * in __ref's order; the 8 lanes of the plane sums are 8 / WD vectors, stored and combined by
 * __ref's scalar expression; the tails are __ref's scalar loops. No fused multiply-add.
 */
#define BN_NV (8 / WD)

BN_TARGET static double BN_NAME(plane_sum)(int64_t hw, const float *x) {
    VD s[BN_NV];
    double a[8], tail = 0.0;
    int64_t j = 0;
    for (int v = 0; v < BN_NV; v++) s[v] = D_SET(0.0);
    for (; j + 8 <= hw; j += 8)
        for (int v = 0; v < BN_NV; v++) s[v] = D_ADD(s[v], D_LD(x + j + v * WD));
    for (; j < hw; j++) tail += (double)x[j];
    for (int v = 0; v < BN_NV; v++) D_STD(a + v * WD, s[v]);
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + tail;
}

BN_TARGET static double BN_NAME(plane_dev)(int64_t hw, const float *x, const float *dy,
                                           double mean) {
    VD s[BN_NV];
    const VD vm = D_SET(mean);
    double a[8];
    int64_t j = 0;
    for (int v = 0; v < BN_NV; v++) s[v] = D_SET(0.0);
    if (dy) {
        for (; j + 8 <= hw; j += 8)
            for (int v = 0; v < BN_NV; v++) {
                const int64_t o = j + v * WD;
                s[v] = D_ADD(s[v], D_MUL(D_LD(dy + o), D_SUB(D_LD(x + o), vm)));
            }
    } else {
        for (; j + 8 <= hw; j += 8)
            for (int v = 0; v < BN_NV; v++) {
                const VD d = D_SUB(D_LD(x + j + v * WD), vm);
                s[v] = D_ADD(s[v], D_MUL(d, d));
            }
    }
    for (int v = 0; v < BN_NV; v++) D_STD(a + v * WD, s[v]);
    for (; j < hw; j++) {
        const double d = (double)x[j] - mean;
        a[0] += dy ? (double)dy[j] * d : d * d;
    }
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

BN_TARGET static void BN_NAME(plane_bwd)(int64_t hw, const float *x, const float *dy,
                                          double mean, double *sum, double *dot) {
    VD s[BN_NV], q[BN_NV];
    const VD vm = D_SET(mean);
    double a[8], b[8], tail = 0.0;
    int64_t j = 0;
    for (int v = 0; v < BN_NV; v++) s[v] = q[v] = D_SET(0.0);
    for (; j + 8 <= hw; j += 8)
        for (int v = 0; v < BN_NV; v++) {
            const int64_t o = j + v * WD;
            const VD g = D_LD(dy + o);
            s[v] = D_ADD(s[v], g);
            q[v] = D_ADD(q[v], D_MUL(g, D_SUB(D_LD(x + o), vm)));
        }
    for (int v = 0; v < BN_NV; v++) {
        D_STD(a + v * WD, s[v]);
        D_STD(b + v * WD, q[v]);
    }
    for (; j < hw; j++) {
        tail += (double)dy[j];
        b[0] += (double)dy[j] * ((double)x[j] - mean);
    }
    *sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + tail;
    *dot = ((b[0] + b[4]) + (b[1] + b[5])) + ((b[2] + b[6]) + (b[3] + b[7]));
}

BN_TARGET static void BN_NAME(affine)(int64_t len, const float *x, float a, float s, float *y) {
    const VF va = F_SET(a), vs = F_SET(s);
    int64_t j = 0;
    for (; j + WF <= len; j += WF) F_ST(y + j, F_ADD(F_MUL(F_LD(x + j), va), vs));
    for (; j < len; j++) y[j] = x[j] * a + s;
}

BN_TARGET static void BN_NAME(affine_v)(int64_t len, const float *x, const float *a,
                                        const float *s, float *y) {
    int64_t j = 0;
    for (; j + WF <= len; j += WF)
        F_ST(y + j, F_ADD(F_MUL(F_LD(x + j), F_LD(a + j)), F_LD(s + j)));
    for (; j < len; j++) y[j] = x[j] * a[j] + s[j];
}

/* The accumulators: chunks of BN_CH vectors held in registers over the n images (each element
 * still adds the images in order), then single vectors, then __ref's scalar loop. */
BN_TARGET static void BN_NAME(acc_sum)(int64_t n, int64_t is, int64_t len, const float *x,
                                       double *acc) {
    int64_t j = 0;
    for (; j + BN_CH * WD <= len; j += BN_CH * WD) {
        VD a[BN_CH];
        for (int v = 0; v < BN_CH; v++) a[v] = D_LDD(acc + j + v * WD);
        for (int64_t i = 0; i < n; i++) {
            const float *p = x + i * is + j;
            for (int v = 0; v < BN_CH; v++) a[v] = D_ADD(a[v], D_LD(p + v * WD));
        }
        for (int v = 0; v < BN_CH; v++) D_STD(acc + j + v * WD, a[v]);
    }
    for (; j + WD <= len; j += WD) {
        VD a = D_LDD(acc + j);
        for (int64_t i = 0; i < n; i++) a = D_ADD(a, D_LD(x + i * is + j));
        D_STD(acc + j, a);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = j; k < len; k++) acc[k] += (double)x[i * is + k];
}

BN_TARGET static void BN_NAME(acc_sqdev)(int64_t n, int64_t is, int64_t len, const float *x,
                                         const double *mean, double *acc) {
    int64_t j = 0;
    for (; j + BN_CH * WD <= len; j += BN_CH * WD) {
        VD a[BN_CH], m[BN_CH];
        for (int v = 0; v < BN_CH; v++) {
            a[v] = D_LDD(acc + j + v * WD);
            m[v] = D_LDD(mean + j + v * WD);
        }
        for (int64_t i = 0; i < n; i++) {
            const float *p = x + i * is + j;
            for (int v = 0; v < BN_CH; v++) {
                const VD d = D_SUB(D_LD(p + v * WD), m[v]);
                a[v] = D_ADD(a[v], D_MUL(d, d));
            }
        }
        for (int v = 0; v < BN_CH; v++) D_STD(acc + j + v * WD, a[v]);
    }
    for (; j + WD <= len; j += WD) {
        VD a = D_LDD(acc + j);
        const VD m = D_LDD(mean + j);
        for (int64_t i = 0; i < n; i++) {
            const VD d = D_SUB(D_LD(x + i * is + j), m);
            a = D_ADD(a, D_MUL(d, d));
        }
        D_STD(acc + j, a);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = j; k < len; k++) {
            const double d = (double)x[i * is + k] - mean[k];
            acc[k] += d * d;
        }
}

/* The sums of acc_bwd and acc_bwd_mr over g = dy (act ET_ACT_NONE, t unread) or dy masked
 * from t by act (D_LDM): chunks of BN_CH vectors of accumulators held in registers over the
 * images, then single vectors, then __ref's scalar loop. Inlined with act a constant, so no
 * loop tests the mask or the act. */
BN_TARGET static inline __attribute__((always_inline)) void
BN_NAME(acc_bwd_g)(int64_t n, int64_t is, int64_t len, const float *x, const float *dy,
                   const float *t, et_act act, const float *mean, double *as, double *ad) {
#define BN_G(o) (act != ET_ACT_NONE ? D_LDM(dy + (o), t + (o), act) : D_LD(dy + (o)))
    int64_t j = 0;
    for (; j + BN_CH * WD <= len; j += BN_CH * WD) {
        VD s[BN_CH], d[BN_CH], m[BN_CH];
        for (int v = 0; v < BN_CH; v++) {
            s[v] = D_LDD(as + j + v * WD);
            d[v] = D_LDD(ad + j + v * WD);
            m[v] = D_LD(mean + j + v * WD);
        }
        for (int64_t i = 0; i < n; i++)
            for (int v = 0; v < BN_CH; v++) {
                const int64_t o = i * is + j + v * WD;
                const VD g = BN_G(o);
                s[v] = D_ADD(s[v], g);
                d[v] = D_ADD(d[v], D_MUL(g, D_SUB(D_LD(x + o), m[v])));
            }
        for (int v = 0; v < BN_CH; v++) {
            D_STD(as + j + v * WD, s[v]);
            D_STD(ad + j + v * WD, d[v]);
        }
    }
    for (; j + WD <= len; j += WD) {
        VD s = D_LDD(as + j), d = D_LDD(ad + j);
        const VD m = D_LD(mean + j);
        for (int64_t i = 0; i < n; i++) {
            const VD g = BN_G(i * is + j);
            s = D_ADD(s, g);
            d = D_ADD(d, D_MUL(g, D_SUB(D_LD(x + i * is + j), m)));
        }
        D_STD(as + j, s);
        D_STD(ad + j, d);
    }
#undef BN_G
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = j; k < len; k++) {
            const int64_t o = i * is + k;
            const double g = (double)(act != ET_ACT_NONE ? et_bn_mask_(act, t[o], dy[o]) : dy[o]);
            as[k] += g;
            ad[k] += g * ((double)x[o] - (double)mean[k]);
        }
}

BN_TARGET static void BN_NAME(acc_bwd)(int64_t n, int64_t is, int64_t len, const float *x,
                                       const float *dy, const float *mean, double *as,
                                       double *ad) {
    BN_NAME(acc_bwd_g)(n, is, len, x, dy, NULL, ET_ACT_NONE, mean, as, ad);
}

BN_TARGET static void BN_NAME(dx)(int64_t len, const float *x, const float *dy, float gm,
                                  float mean, float pr, float gs, float *dx) {
    const VF vg = F_SET(gm), vm = F_SET(mean), vp = F_SET(pr), vs = F_SET(gs);
    int64_t j = 0;
    for (; j + WF <= len; j += WF) {
        const VF t = F_SUB(F_SUB(F_LD(dy + j), vg), F_MUL(F_SUB(F_LD(x + j), vm), vp));
        F_ST(dx + j, F_MUL(t, vs));
    }
    for (; j < len; j++) dx[j] = (dy[j] - gm - (x[j] - mean) * pr) * gs;
}

BN_TARGET static void BN_NAME(dx_v)(int64_t len, const float *x, const float *dy, const float *gm,
                                    const float *mean, const float *pr, const float *gs,
                                    float *dx) {
    int64_t j = 0;
    for (; j + WF <= len; j += WF) {
        const VF t = F_SUB(F_SUB(F_LD(dy + j), F_LD(gm + j)),
                           F_MUL(F_SUB(F_LD(x + j), F_LD(mean + j)), F_LD(pr + j)));
        F_ST(dx + j, F_MUL(t, F_LD(gs + j)));
    }
    for (; j < len; j++) dx[j] = (dy[j] - gm[j] - (x[j] - mean[j]) * pr[j]) * gs[j];
}

/* ---- the fused relu / relu6: the kernels above with act on the affine's output, or with dy
 * masked from the act's output t (the same operations on the masked value) ---------------- */
BN_TARGET static void BN_NAME(affine_act)(int64_t len, const float *x, float a, float s,
                                          et_act act, float *y) {
    const VF va = F_SET(a), vs = F_SET(s);
    int64_t j = 0;
    for (; j + WF <= len; j += WF) F_ST(y + j, F_ACT(F_ADD(F_MUL(F_LD(x + j), va), vs), act));
    for (; j < len; j++) y[j] = et_bn_act_(act, x[j] * a + s);
}

BN_TARGET static void BN_NAME(affine_v_act)(int64_t len, const float *x, const float *a,
                                            const float *s, et_act act, float *y) {
    int64_t j = 0;
    for (; j + WF <= len; j += WF)
        F_ST(y + j, F_ACT(F_ADD(F_MUL(F_LD(x + j), F_LD(a + j)), F_LD(s + j)), act));
    for (; j < len; j++) y[j] = et_bn_act_(act, x[j] * a[j] + s[j]);
}

/* Image by image (each element still adds the images in order): the three rows of an image
 * are contiguous streams, where chunks held in registers over the images would read 3 x n rows
 * at once (with image strides of a multiple of 4 KiB all in the same cache sets). For the
 * larger planes' blocks (bn_bwd_stats): acc_bwd_mr's loop took 1-10% longer on 16x16 planes
 * and 20-40% longer on 8x8 planes of 144 channels (16 images, AVX2 and AVX-512). */
BN_TARGET static void BN_NAME(acc_bwd_m)(int64_t n, int64_t is, int64_t len, const float *x,
                                         const float *dy, const float *t, et_act act,
                                         const float *mean, double *as, double *ad) {
    for (int64_t i = 0; i < n; i++) {
        const float *p = x + i * is, *q = dy + i * is, *r = t + i * is;
        int64_t j = 0;
        for (; j + WD <= len; j += WD) {
            const VD g = D_LDM(q + j, r + j, act);
            D_STD(as + j, D_ADD(D_LDD(as + j), g));
            D_STD(ad + j, D_ADD(D_LDD(ad + j), D_MUL(g, D_SUB(D_LD(p + j), D_LD(mean + j)))));
        }
        for (; j < len; j++) {
            const double g = (double)et_bn_mask_(act, r[j], q[j]);
            as[j] += g;
            ad[j] += g * ((double)p[j] - (double)mean[j]);
        }
    }
}

/* acc_bwd_m's sums in acc_bwd's loop order. For the small-plane blocks (rows of at most
 * BN_BLOCK elements, image strides of c * hw floats), where it ran ~20% faster than the
 * image-by-image loop. */
BN_TARGET static void BN_NAME(acc_bwd_mr)(int64_t n, int64_t is, int64_t len, const float *x,
                                          const float *dy, const float *t, et_act act,
                                          const float *mean, double *as, double *ad) {
    if (act == ET_ACT_RELU6)
        BN_NAME(acc_bwd_g)(n, is, len, x, dy, t, ET_ACT_RELU6, mean, as, ad);
    else
        BN_NAME(acc_bwd_g)(n, is, len, x, dy, t, ET_ACT_RELU, mean, as, ad);
}

BN_TARGET static void BN_NAME(dx_m)(int64_t len, const float *x, const float *dy, const float *t,
                                    et_act act, float gm, float mean, float pr, float gs,
                                    float *dx) {
    const VF vg = F_SET(gm), vm = F_SET(mean), vp = F_SET(pr), vs = F_SET(gs);
    int64_t j = 0;
    for (; j + WF <= len; j += WF) {
        const VF g = F_MASK(F_LD(dy + j), F_LD(t + j), act);
        const VF u = F_SUB(F_SUB(g, vg), F_MUL(F_SUB(F_LD(x + j), vm), vp));
        F_ST(dx + j, F_MUL(u, vs));
    }
    for (; j < len; j++) dx[j] = (et_bn_mask_(act, t[j], dy[j]) - gm - (x[j] - mean) * pr) * gs;
}

BN_TARGET static void BN_NAME(dx_v_m)(int64_t len, const float *x, const float *dy,
                                      const float *t, et_act act, const float *gm,
                                      const float *mean, const float *pr, const float *gs,
                                      float *dx) {
    int64_t j = 0;
    for (; j + WF <= len; j += WF) {
        const VF g = F_MASK(F_LD(dy + j), F_LD(t + j), act);
        const VF u = F_SUB(F_SUB(g, F_LD(gm + j)),
                           F_MUL(F_SUB(F_LD(x + j), F_LD(mean + j)), F_LD(pr + j)));
        F_ST(dx + j, F_MUL(u, F_LD(gs + j)));
    }
    for (; j < len; j++)
        dx[j] = (et_bn_mask_(act, t[j], dy[j]) - gm[j] - (x[j] - mean[j]) * pr[j]) * gs[j];
}

BN_TARGET static void BN_NAME(plane_bwd_m)(int64_t hw, const float *x, const float *dy,
                                           const float *t, et_act act, double mean, double *sum,
                                           double *dot) {
    VD s[BN_NV], q[BN_NV];
    const VD vm = D_SET(mean);
    double a[8], b[8], tail = 0.0;
    int64_t j = 0;
    for (int v = 0; v < BN_NV; v++) s[v] = q[v] = D_SET(0.0);
    for (; j + 8 <= hw; j += 8)
        for (int v = 0; v < BN_NV; v++) {
            const int64_t o = j + v * WD;
            const VD g = D_LDM(dy + o, t + o, act);
            s[v] = D_ADD(s[v], g);
            q[v] = D_ADD(q[v], D_MUL(g, D_SUB(D_LD(x + o), vm)));
        }
    for (int v = 0; v < BN_NV; v++) {
        D_STD(a + v * WD, s[v]);
        D_STD(b + v * WD, q[v]);
    }
    for (; j < hw; j++) {
        const double g = (double)et_bn_mask_(act, t[j], dy[j]);
        tail += g;
        b[0] += g * ((double)x[j] - mean);
    }
    *sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + tail;
    *dot = ((b[0] + b[4]) + (b[1] + b[5])) + ((b[2] + b[6]) + (b[3] + b[7]));
}

/* ---- the per-channel factors of a small-plane block: __ref's expressions per lane (the
 * divisions and square roots are correctly rounded, so a lane gives the scalar bits). A
 * division by a power of two d (the counts of batches of 32: 32 * hw) is a multiplication by
 * 1 / d, exact: both round the same exact quotient once, and the multiplier's throughput is
 * ~8x the divider's. ------------------------------------------------------------------------ */
BN_TARGET static void BN_NAME(div)(int64_t nc, const double *s, double d, double *q_out) {
    const VD vd = D_SET(d), vr = D_SET(1.0 / d);
    const int pow2 = bn_pow2(d);
    int64_t q = 0;
    for (; q + WD <= nc; q += WD)
        D_STD(q_out + q, pow2 ? D_MUL(D_LDD(s + q), vr) : D_DIV(D_LDD(s + q), vd));
    for (; q < nc; q++) q_out[q] = s[q] / d;
}

BN_TARGET static void BN_NAME(fwd_factors)(int64_t nc, const double *mean, const double *var,
                                           double eps, const float *gamma, const float *beta,
                                           double *invstd, float *a, float *sh) {
    const VD one = D_SET(1.0), zero = D_SET(0.0), ve = D_SET(eps);
    int64_t q = 0;
    for (; q + WD <= nc; q += WD) {
        const VD is = D_DIV(one, D_SQRT(D_ADD(D_LDD(var + q), ve)));
        const VD g = gamma ? D_LD(gamma + q) : one, b = beta ? D_LD(beta + q) : zero;
        const VD alpha = D_MUL(is, g);
        D_STD(invstd + q, is);
        D_STF(a + q, alpha);
        D_STF(sh + q, D_SUB(b, D_MUL(D_LDD(mean + q), alpha)));
    }
    for (; q < nc; q++) {
        const double is = 1.0 / sqrt(var[q] + eps);
        const double g = gamma ? (double)gamma[q] : 1.0, b = beta ? (double)beta[q] : 0.0;
        const double alpha = is * g;
        invstd[q] = is;
        a[q] = (float)alpha;
        sh[q] = (float)(b - mean[q] * alpha);
    }
}

BN_TARGET static void BN_NAME(bwd_factors)(int64_t nc, const double *sum, const double *dot,
                                           double count, const float *invstd, const float *gamma,
                                           int frozen, float *dgamma, float *dbeta, float *gm,
                                           float *pr, float *gs) {
    const VD one = D_SET(1.0), vc = D_SET(count), vr = D_SET(1.0 / count);
    const int pow2 = bn_pow2(count);
    int64_t q = 0;
    for (; q + WD <= nc; q += WD) {
        const VD is = D_LD(invstd + q), s = D_LDD(sum + q), di = D_MUL(D_LDD(dot + q), is);
        if (dgamma) D_STF(dgamma + q, di);
        if (dbeta) D_STF(dbeta + q, s);
        const VD g = gamma ? D_LD(gamma + q) : one;
        if (frozen) {
            D_STF(gm + q, D_SET(0.0));
            D_STF(pr + q, D_SET(0.0));
        } else {
            D_STF(gm + q, pow2 ? D_MUL(s, vr) : D_DIV(s, vc));
            D_STF(pr + q, pow2 ? D_MUL(D_MUL(di, is), vr) : D_DIV(D_MUL(di, is), vc));
        }
        D_STF(gs + q, D_MUL(is, g));
    }
    for (; q < nc; q++) {
        const double is = (double)invstd[q], di = dot[q] * is;
        if (dgamma) dgamma[q] = (float)di;
        if (dbeta) dbeta[q] = (float)sum[q];
        const double g = gamma ? (double)gamma[q] : 1.0;
        gm[q] = frozen ? 0.0f : (float)(sum[q] / count);
        pr[q] = frozen ? 0.0f : (float)(di * is / count);
        gs[q] = (float)(is * g);
    }
}

#undef BN_NV

/* The parameters above are this instantiation's only: undefined here, so the next ISA defines
 * its own. */
#undef BN_NAME
#undef BN_TARGET
#undef VD
#undef WD
#undef BN_CH
#undef D_LD
#undef D_LDD
#undef D_STD
#undef D_ADD
#undef D_SUB
#undef D_MUL
#undef D_SET
#undef D_DIV
#undef D_SQRT
#undef D_STF
#undef VF
#undef WF
#undef F_LD
#undef F_ST
#undef F_ADD
#undef F_SUB
#undef F_MUL
#undef F_SET
#undef D_LDM
#undef F_MASK
#undef F_ACT
