// Scalar, bit-exact port of the two avx_mathfun routines torch's AVX2 `randn` kernel uses:
// pytorch/pytorch aten/src/ATen/native/cpu/avx_mathfun.h (`log256_ps`, `sincos256_ps`; AVX
// version by Giovanni Garberoglio of Julien Pommier's sse_mathfun, Cephes polynomials, zlib
// licence), v1.13.
//
// One lane of each 8-wide routine is evaluated in Float with the same operations in the same
// order. Torch is built with GCC, whose default `-ffp-contract=fast` fuses every multiply whose
// only use is one add or subtract into an FMA (GCC's widening_mul pass, statements in source
// order). Where the source has `a*b + c` we therefore use `c.addingProduct(a, b)` (a single
// rounding). This reproduces every golden `rng.*` vector (7,884 values) bit for bit; evaluating
// without FMA does not (about 1% of values differ by 1 ulp).

enum AVXMathFun {
    private static let sqrtHalf: Float = 0.707106781186547524
    private static let logP: [Float] = [7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1,
                                        -1.2420140846E-1, 1.4249322787E-1, -1.6668057665E-1,
                                        2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1]
    private static let logQ1: Float = -2.12194440e-4
    private static let logQ2: Float = 0.693359375

    /// `log256_ps` for one lane (x > 0; x <= 0 gives NaN as in the original).
    static func log(_ input: Float) -> Float {
        if input.isNaN || input <= 0 { return .nan }
        // Cut off denormals: _mm256_max_ps(x, min_norm_pos).
        var x = max(input, Float(bitPattern: 0x0080_0000))
        let exponent = Int32(bitPattern: x.bitPattern >> 23)
        // Keep the mantissa, exponent of 0.5: x in [0.5, 1).
        x = Float(bitPattern: (x.bitPattern & ~UInt32(0x7F80_0000)) | Float(0.5).bitPattern)
        var e = Float(exponent - 0x7F)
        e = e + 1
        // if (x < SQRTHF) { e -= 1; x = x + x - 1 } else { x = x - 1 }, branch-free as written.
        let below = x < sqrtHalf
        let tmp: Float = below ? x : 0
        x = x - 1
        e = e - (below ? 1 : 0)
        x = x + tmp

        let z = x * x
        var y = logP[0]
        for k in 1..<logP.count { y = logP[k].addingProduct(y, x) }   // y = y*x + p_k (FMA)
        y = y * x
        y = (e * logQ1).addingProduct(y, z)                          // y = y*z + e*q1
        y = y.addingProduct(-z, 0.5)                                  // y = y - z*0.5
        x = (x + y).addingProduct(e, logQ2)                           // x = (x + y) + e*q2
        return x
    }

    private static let fourOverPi: Float = 1.27323954473516
    private static let minusDP1: Float = -0.78515625
    private static let minusDP2: Float = -2.4187564849853515625e-4
    private static let minusDP3: Float = -3.77489497744594108e-8
    private static let sinP0: Float = -1.9515295891E-4
    private static let sinP1: Float = 8.3321608736E-3
    private static let sinP2: Float = -1.6666654611E-1
    private static let cosP0: Float = 2.443315711809948E-005
    private static let cosP1: Float = -1.388731625493765E-003
    private static let cosP2: Float = 4.166664568298827E-002

    /// `sincos256_ps` for one lane: (sin x, cos x). Valid for |x| < 8192 as the original.
    static func sincos(_ input: Float) -> (sin: Float, cos: Float) {
        var signSin = input.bitPattern & 0x8000_0000
        var x = Float(bitPattern: input.bitPattern & 0x7FFF_FFFF)
        var y = x * fourOverPi
        // j = (int(y) + 1) & ~1 (cvttps truncates toward zero).
        var j = Int32(y.isFinite && y < 2_147_483_520 ? y : 0)
        j = (j &+ 1) & ~1
        y = Float(j)
        let swapSignSin = UInt32(bitPattern: j & 4) << 29
        let useSinPoly = (j & 2) == 0

        // Extended precision modular arithmetic: x = ((x - y*DP1) - y*DP2) - y*DP3 (FMAs).
        x = x.addingProduct(y, minusDP1)
        x = x.addingProduct(y, minusDP2)
        x = x.addingProduct(y, minusDP3)

        let signCos = UInt32(bitPattern: ~(j &- 2) & 4) << 29
        signSin ^= swapSignSin

        let z = x * x
        var yc = cosP1.addingProduct(cosP0, z)
        yc = cosP2.addingProduct(yc, z)
        yc = yc * z
        yc = (-(z * 0.5)).addingProduct(yc, z)                      // y*z - z*0.5 (FMS)
        yc = yc + 1

        var ys = sinP1.addingProduct(sinP0, z)
        ys = sinP2.addingProduct(ys, z)
        ys = ys * z
        ys = x.addingProduct(ys, x)                                   // y2*x + x

        let ysin2: Float = useSinPoly ? ys : 0
        let ysin1: Float = useSinPoly ? 0 : yc
        ys = ys - ysin2
        yc = yc - ysin1
        let s = ysin1 + ysin2
        let c = yc + ys
        return (Float(bitPattern: s.bitPattern ^ signSin), Float(bitPattern: c.bitPattern ^ signCos))
    }
}
