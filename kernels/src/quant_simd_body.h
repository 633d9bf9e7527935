/* edgetrain — the body of the fake-quant SIMD rows (quant_simd.c includes it once per ISA).
 *
 * The includer defines: FQ_NAME(f) (the row's function name), FQ_TARGET (target attribute),
 * VF / WF (a vector of WF floats), F_LD, F_ST, F_SET, F_ADD, F_SUB, F_MUL, F_RND (round half to
 * even, as nearbyintf in the default mode), F_LOWER(lo, q) (q < lo ? lo : q, a NaN q kept),
 * F_UPPER(hi, q) (q > hi ? hi : q, a NaN q kept), F_INSIDE(q, lo, hi, one) (one where
 * lo <= q <= hi, else +0; NaN q: +0), F_MINACC(x, a) (x < a ? x : a: a NaN x leaves a) and
 * F_MAXACC(x, a) (x > a ? x : a). Each lane does __ref's operations (quant.c) on its element
 * in __ref's order; the tails run __ref's scalar expressions. No fused multiply-add.
 */

FQ_TARGET static void FQ_NAME(fwd)(int64_t n, const float *x, float s, float inv_s, float zp,
                                   float lo, float hi, float *y) {
    const VF vs = F_SET(s), vi = F_SET(inv_s), vz = F_SET(zp), vl = F_SET(lo), vh = F_SET(hi);
    int64_t i = 0;
    for (; i + 2 * WF <= n; i += 2 * WF) {
        const VF q0 = F_ADD(F_RND(F_MUL(F_LD(x + i), vi)), vz);
        const VF q1 = F_ADD(F_RND(F_MUL(F_LD(x + i + WF), vi)), vz);
        F_ST(y + i, F_MUL(F_SUB(F_UPPER(vh, F_LOWER(vl, q0)), vz), vs));
        F_ST(y + i + WF, F_MUL(F_SUB(F_UPPER(vh, F_LOWER(vl, q1)), vz), vs));
    }
    for (; i + WF <= n; i += WF) {
        const VF q = F_ADD(F_RND(F_MUL(F_LD(x + i), vi)), vz);
        F_ST(y + i, F_MUL(F_SUB(F_UPPER(vh, F_LOWER(vl, q)), vz), vs));
    }
    if (i < n) et_f32_fq_fwd__ref(n - i, x + i, s, inv_s, zp, lo, hi, y + i);
}

FQ_TARGET static void FQ_NAME(bwd)(int64_t n, const float *dy, const float *x, float inv_s,
                                   float zp, float lo, float hi, float *dx) {
    const VF vi = F_SET(inv_s), vz = F_SET(zp), vl = F_SET(lo), vh = F_SET(hi);
    const VF one = F_SET(1.0f);
    int64_t i = 0;
    for (; i + 2 * WF <= n; i += 2 * WF) {
        const VF q0 = F_ADD(F_RND(F_MUL(F_LD(x + i), vi)), vz);
        const VF q1 = F_ADD(F_RND(F_MUL(F_LD(x + i + WF), vi)), vz);
        F_ST(dx + i, F_MUL(F_LD(dy + i), F_INSIDE(q0, vl, vh, one)));
        F_ST(dx + i + WF, F_MUL(F_LD(dy + i + WF), F_INSIDE(q1, vl, vh, one)));
    }
    for (; i + WF <= n; i += WF) {
        const VF q = F_ADD(F_RND(F_MUL(F_LD(x + i), vi)), vz);
        F_ST(dx + i, F_MUL(F_LD(dy + i), F_INSIDE(q, vl, vh, one)));
    }
    if (i < n) et_f32_fq_bwd__ref(n - i, dy + i, x + i, inv_s, zp, lo, hi, dx + i);
}

/* 4 vectors of running minima / maxima (NaN ignored), reduced lane by lane, then the tail; a
 * zero result is +0 (quant_internal.h). */
FQ_TARGET static void FQ_NAME(minmax)(int64_t n, const float *x, float *mn, float *mx) {
    VF a0 = F_SET(INFINITY), a1 = a0, a2 = a0, a3 = a0;
    VF b0 = F_SET(-INFINITY), b1 = b0, b2 = b0, b3 = b0;
    float la[WF], lb[WF], a = INFINITY, b = -INFINITY;
    int64_t i = 0;
    for (; i + 4 * WF <= n; i += 4 * WF) {
        const VF x0 = F_LD(x + i), x1 = F_LD(x + i + WF);
        const VF x2 = F_LD(x + i + 2 * WF), x3 = F_LD(x + i + 3 * WF);
        a0 = F_MINACC(x0, a0), a1 = F_MINACC(x1, a1), a2 = F_MINACC(x2, a2), a3 = F_MINACC(x3, a3);
        b0 = F_MAXACC(x0, b0), b1 = F_MAXACC(x1, b1), b2 = F_MAXACC(x2, b2), b3 = F_MAXACC(x3, b3);
    }
    for (; i + WF <= n; i += WF) {
        const VF x0 = F_LD(x + i);
        a0 = F_MINACC(x0, a0), b0 = F_MAXACC(x0, b0);
    }
    a0 = F_MINACC(F_MINACC(a1, a0), F_MINACC(a3, a2));
    b0 = F_MAXACC(F_MAXACC(b1, b0), F_MAXACC(b3, b2));
    F_ST(la, a0);
    F_ST(lb, b0);
    for (int l = 0; l < WF; l++) {
        a = la[l] < a ? la[l] : a;
        b = lb[l] > b ? lb[l] : b;
    }
    for (; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *mn = et_fq_plus_zero(a);
    *mx = et_fq_plus_zero(b);
}

/* The parameters above are this instantiation's only: undefined here, so the next ISA defines
 * its own. */
#undef FQ_NAME
#undef FQ_TARGET
#undef VF
#undef WF
#undef F_LD
#undef F_ST
#undef F_SET
#undef F_ADD
#undef F_SUB
#undef F_MUL
#undef F_RND
#undef F_LOWER
#undef F_UPPER
#undef F_INSIDE
#undef F_MINACC
#undef F_MAXACC
