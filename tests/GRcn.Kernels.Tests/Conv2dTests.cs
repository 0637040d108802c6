using GRcn.Kernels.Cpu;
using GRcn.Kernels.Tests.Reference;

namespace GRcn.Kernels.Tests;

public sealed class Conv2dTests
{
    /// <summary>Allowed error relative to the sum of absolute terms of each output (float32 accumulation).</summary>
    private const double RelTol = 2e-5;
    /// <summary>Absolute floor of the allowed error.</summary>
    private const double AbsTol = 1e-6;

    private static float[] Random(Random rng, int count)
    {
        var v = new float[count];
        for (int i = 0; i < count; i++) v[i] = 2f * rng.NextSingle() - 1f;
        return v;
    }

    private static void AssertClose(string what, double[] want, double[] scale, float[] got)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < got.Length; i++)
        {
            double tol = AbsTol + RelTol * scale[i];
            if (!(Math.Abs(got[i] - want[i]) <= tol))
                Assert.Fail($"{what}[{i}] = {got[i]}, want {want[i]} (tol {tol})");
        }
    }

    public static TheoryData<Conv2dCase> Cases => new()
    {
        new Conv2dCase(2, 3, 9, 11, 4, 3, 3, PadH: 1, PadW: 1),                       // VGG-style 3×3 pad 1
        new Conv2dCase(2, 5, 7, 8, 3, 1, 1),                                          // pointwise (no im2col)
        new Conv2dCase(1, 4, 6, 5, 6, 1, 1, Bias: false),                             // pointwise, no bias
        new Conv2dCase(2, 3, 10, 9, 5, 1, 1, StrideH: 2, StrideW: 2),                 // ResNet downsample 1×1/s2
        new Conv2dCase(1, 2, 5, 5, 3, 1, 1, PadH: 1, PadW: 1),                        // 1×1 with padding
        new Conv2dCase(1, 4, 13, 17, 3, 3, 5, StrideH: 2, StrideW: 3, PadH: 1, PadW: 2, DilationH: 2, DilationW: 1),
        new Conv2dCase(3, 2, 6, 7, 2, 2, 2, StrideH: 2, StrideW: 2, Bias: false),     // learned 2×2/s2 "pool"
        new Conv2dCase(2, 3, 15, 12, 4, 7, 7, StrideH: 2, StrideW: 2, PadH: 3, PadW: 3), // ResNet stem shape
        new Conv2dCase(1, 1, 5, 5, 1, 5, 5, PadH: 2, PadW: 2),
        new Conv2dCase(1, 2, 3, 4, 2, 2, 2, PadH: 3, PadW: 3),                        // padding beyond the kernel
        new Conv2dCase(2, 2, 9, 9, 3, 3, 3, PadH: 2, PadW: 2, DilationH: 2, DilationW: 2),
        new Conv2dCase(1, 3, 1, 1, 2, 3, 3, PadH: 1, PadW: 1),                        // 1×1 image
        new Conv2dCase(1, 17, 8, 19, 20, 3, 3, PadH: 0, PadW: 1),                     // GEMM edges in every direction
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackward_MatchReference(Conv2dCase k) => CrossCheck(k, new Random(k.H * 1009 + k.W * 101 + k.C * 11 + k.KH));

    [Fact]
    public void BandedColumns_MatchReference()
    {
        // Force several column bands per image (one or two output rows each).
        Conv2dCpu.ColumnLimitOverride = 3 * 3 * 3 * 11 * 2;
        try
        {
            CrossCheck(new Conv2dCase(2, 3, 9, 11, 4, 3, 3, PadH: 1, PadW: 1), new Random(1));
            CrossCheck(new Conv2dCase(1, 2, 11, 7, 3, 3, 3, StrideH: 2, StrideW: 1, PadH: 1, PadW: 0, DilationH: 1, DilationW: 2), new Random(2));
            Conv2dCpu.ColumnLimitOverride = 1;
            CrossCheck(new Conv2dCase(2, 2, 6, 6, 3, 3, 3, PadH: 1, PadW: 1), new Random(3));
        }
        finally
        {
            Conv2dCpu.ColumnLimitOverride = 0;
        }
    }

    [Fact]
    public void LargerThanOneGemmBlock_MatchesReference()
    {
        // C·KH·KW > GemmCpu.KC and OH·OW > GemmCpu.NC: the implicit column packing spans several
        // k slices and column blocks, with output rows straddling B panels.
        CrossCheck(new Conv2dCase(1, 40, 36, 41, 8, 3, 3, PadH: 1, PadW: 1), new Random(7));
        CrossCheck(new Conv2dCase(2, 30, 45, 51, 7, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), new Random(8));
    }

    [Fact]
    public void RandomGeometries_MatchReference()
    {
        var rng = new Random(2024);
        for (int i = 0; i < 24; i++)
        {
            int kh = rng.Next(1, 5), kw = rng.Next(1, 5), dh = rng.Next(1, 3), dw = rng.Next(1, 3);
            int ph = rng.Next(0, 3), pw = rng.Next(0, 3), sh = rng.Next(1, 4), sw = rng.Next(1, 4);
            int h = dh * (kh - 1) + 1 + rng.Next(0, 30), w = dw * (kw - 1) + 1 + rng.Next(0, 40);
            var k = new Conv2dCase(rng.Next(1, 3), rng.Next(1, 20), h, w, rng.Next(1, 20), kh, kw,
                StrideH: sh, StrideW: sw, PadH: ph, PadW: pw, DilationH: dh, DilationW: dw, Bias: rng.Next(2) == 0);
            CrossCheck(k, rng);
        }
    }

    [Fact]
    public void WinogradForward_RandomGeometries_MatchReference()
    {
        // Geometries the Winograd F(2×2, 3×3) kernel takes: odd output sizes (half tiles at the
        // right and bottom edge), padding 0–2 (patches outside the image), tile rows that end
        // inside a block and blocks that span tile rows and images, output channels not a multiple
        // of 6, C above one GEMM k slice (partial sums over slices), with and without bias.
        var rng = new Random(47);
        for (int i = 0; i < 16; i++)
        {
            int ph = rng.Next(0, 3), pw = rng.Next(0, 3);
            int c = i == 0 ? 300 : rng.Next(Conv2dCpu.WinogradMinChannels, 48);
            int o = rng.Next(Conv2dCpu.WinogradMinChannels, 40);
            int w = 18 - 2 * pw + rng.Next(0, 40), h = 4 - 2 * ph + rng.Next(0, 14);
            var k = new Conv2dCase(rng.Next(1, 3), c, h, w, o, 3, 3, PadH: ph, PadW: pw, Bias: rng.Next(3) > 0);
            AssertPath(k, Conv2dCpu.UseWinograd, "Winograd");
            CrossCheckForward(k, rng);
        }
    }

    [Fact]
    public void WinogradInputGradient_MatchesReference()
    {
        // Stride-1 dX is the forward convolution of dY with the flipped filters: Winograd again.
        var k = new Conv2dCase(2, 20, 13, 37, 24, 3, 3, PadH: 1, PadW: 1);
        AssertPath(k, Conv2dCpu.UseWinograd, "Winograd");
        CrossCheck(k, new Random(9));
    }

    [Fact]
    public void WinogradDirectAndGemmForward_AllMatchReference()
    {
        var k = new Conv2dCase(1, 32, 11, 34, 19, 3, 3, PadH: 1, PadW: 1);
        CrossCheckForward(k, new Random(6));
        Conv2dCpu.DisableWinograd = true;
        try
        {
            AssertPath(k, Conv2dCpu.UseDirect, "direct");
            CrossCheckForward(k, new Random(6));
            Conv2dCpu.ForceGemmForward = true;
            CrossCheckForward(k, new Random(6));
        }
        finally
        {
            Conv2dCpu.DisableWinograd = false;
            Conv2dCpu.ForceGemmForward = false;
        }
    }

    private delegate bool PathTest(in Conv2dGeometry g);

    private static void AssertPath(Conv2dCase k, PathTest takes, string path)
    {
        using var tx = Tensor.Zeros(Device.Cpu, k.N, k.C, k.H, k.W);
        using var tw = Tensor.Zeros(Device.Cpu, k.O, k.C, k.KH, k.KW);
        Assert.True(takes(Conv2d.Resolve(tx, tw, null, k.Options)), $"{k} should take the {path} path");
    }

    [Fact]
    public void DirectForward_RandomGeometries_MatchReference()
    {
        // Geometries the direct 3-wide kernel takes: tiles of 16 and 8 columns and partial ones,
        // padding and the image edge inside a tile, rows above/below the image, output channels
        // not a multiple of 6 (4-row and partial panels), C·KH above one chunk of 96 rows, few
        // output rows (output channels split across workers), several images.
        var rng = new Random(31);
        Conv2dCpu.DisableWinograd = true;
        try
        {
            for (int i = 0; i < 40; i++)
            {
                int kh = rng.Next(1, 6), ph = rng.Next(0, 4), pw = rng.Next(0, 3);
                int c = i % 5 == 0 ? rng.Next(33, 60) : rng.Next(1, 12);
                int w = 10 - 2 * pw + rng.Next(0, 50);
                int h = Math.Max(1, kh - 2 * ph) + rng.Next(0, 12);
                var k = new Conv2dCase(rng.Next(1, 3), c, h, w, rng.Next(4, 20), kh, 3, PadH: ph, PadW: pw, Bias: rng.Next(3) > 0);
                AssertPath(k, Conv2dCpu.UseDirect, "direct");
                CrossCheckForward(k, rng);
            }
        }
        finally
        {
            Conv2dCpu.DisableWinograd = false;
        }
    }

    [Fact]
    public void DirectForward_StreamedOutput_MatchesReference()
    {
        // An output of at least DirectStreamingBytes goes out through non-temporal stores (whole
        // tiles) and regular ones (the 8-column tail, the 4-row panel of 16 channels).
        var k = new Conv2dCase(1, 3, 400, 328, 16, 3, 3, PadH: 1, PadW: 1);
        Assert.True((long)k.O * k.OH * k.OW * sizeof(float) >= Conv2dCpu.DirectStreamingBytes);
        AssertPath(k, Conv2dCpu.UseDirect, "direct");
        CrossCheckForward(k, new Random(11));
    }

    [Fact]
    public void DirectAndGemmForward_BothMatchReference()
    {
        var k = new Conv2dCase(2, 7, 9, 37, 11, 3, 3, PadH: 1, PadW: 1);
        CrossCheckForward(k, new Random(5));
        Conv2dCpu.ForceGemmForward = true;
        try
        {
            CrossCheckForward(k, new Random(5));
        }
        finally
        {
            Conv2dCpu.ForceGemmForward = false;
        }
    }

    private static void CrossCheckForward(Conv2dCase k, Random rng)
    {
        var x = Random(rng, k.N * k.C * k.H * k.W);
        var w = Random(rng, k.O * k.C * k.KH * k.KW);
        var b = k.Bias ? Random(rng, k.O) : null;
        using var tx = Tensor.FromArray(x, k.N, k.C, k.H, k.W);
        using var tw = Tensor.FromArray(w, k.O, k.C, k.KH, k.KW);
        using var tb = b is null ? null : Tensor.FromArray(b, k.O);
        using var y = Conv2d.Forward(tx, tw, tb, k.Options);
        var (wantY, scaleY) = Conv2dReference.Forward(k, x, w, b);
        AssertClose($"{k} y", wantY, scaleY, y.ToArray<float>());
    }

    private static void CrossCheck(Conv2dCase k, Random rng)
    {
        var x = Random(rng, k.N * k.C * k.H * k.W);
        var w = Random(rng, k.O * k.C * k.KH * k.KW);
        var b = k.Bias ? Random(rng, k.O) : null;
        var dy = Random(rng, k.N * k.O * k.OH * k.OW);
        using var tx = Tensor.FromArray(x, k.N, k.C, k.H, k.W);
        using var tw = Tensor.FromArray(w, k.O, k.C, k.KH, k.KW);
        using var tb = b is null ? null : Tensor.FromArray(b, k.O);
        using var tdy = Tensor.FromArray(dy, k.N, k.O, k.OH, k.OW);

        using var y = Conv2d.Forward(tx, tw, tb, k.Options);
        Assert.Equal([k.N, k.O, k.OH, k.OW], y.Shape.ToArray());
        var (wantY, scaleY) = Conv2dReference.Forward(k, x, w, b);
        AssertClose($"{k} y", wantY, scaleY, y.ToArray<float>());

        using var grads = Conv2d.Backward(tdy, tx, tw, k.Bias, k.Options);
        var r = Conv2dReference.Backward(k, dy, x, w);
        AssertClose($"{k} dx", r.Dx, r.DxScale, grads.Input!.ToArray<float>());
        AssertClose($"{k} dw", r.Dw, r.DwScale, grads.Weight.ToArray<float>());
        if (k.Bias) AssertClose($"{k} db", r.Db, r.DbScale, grads.Bias!.ToArray<float>());
        else Assert.Null(grads.Bias);
    }

    [Fact]
    public void HandComputed_3x3_Input_2x2_Kernel()
    {
        // x = 1..9 in a 3×3 plane, w = [[1, 0], [0, -1]], b = 10: y[i,j] = 10 + x[i,j] − x[i+1,j+1] = 10 − 4.
        using var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, 1, 1, 3, 3);
        using var w = Tensor.FromArray(new float[] { 1, 0, 0, -1 }, 1, 1, 2, 2);
        using var b = Tensor.FromArray(new float[] { 10 }, 1);
        using var y = Conv2d.Forward(x, w, b, Conv2dOptions.Create());
        Assert.Equal([6f, 6f, 6f, 6f], y.ToArray<float>());

        // dy = [[1, 2], [3, 4]]: dx = dy placed at (i, j) minus dy placed at (i+1, j+1); dw[u,v] = Σ dy·x shifted; db = 10.
        using var dy = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 1, 1, 2, 2);
        using var g = Conv2d.Backward(dy, x, w, withBias: true, Conv2dOptions.Create());
        Assert.Equal([1f, 2f, 0f, 3f, 3f, -2f, 0f, -3f, -4f], g.Input!.ToArray<float>());
        Assert.Equal([1 * 1 + 2 * 2 + 3 * 4 + 4 * 5f, 1 * 2 + 2 * 3 + 3 * 5 + 4 * 6f, 1 * 4 + 2 * 5 + 3 * 7 + 4 * 8f, 1 * 5 + 2 * 6 + 3 * 8 + 4 * 9f],
            g.Weight.ToArray<float>());
        Assert.Equal([10f], g.Bias!.ToArray<float>());
    }

    [Fact]
    public void HandComputed_StrideAndPadding()
    {
        // 1×1 kernel of weight 2 with stride 2 and padding 1 on a 3×3 plane of 1..9: output 3×3 samples
        // rows/cols −1, 1, 3 → only (1,1) is inside.
        using var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, 1, 1, 3, 3);
        using var w = Tensor.FromArray(new float[] { 2 }, 1, 1, 1, 1);
        using var y = Conv2d.Forward(x, w, null, Conv2dOptions.Create(stride: 2, padding: 1));
        Assert.Equal([3, 3], new[] { y.Dim(2), y.Dim(3) });
        Assert.Equal([0f, 0f, 0f, 0f, 10f, 0f, 0f, 0f, 0f], y.ToArray<float>());
    }

    [Fact]
    public void Backward_OverwritesCallerGradients_AndSkipsNullOnes()
    {
        var k = new Conv2dCase(2, 3, 6, 5, 4, 3, 3, PadH: 1, PadW: 1);
        var rng = new Random(4);
        var x = Random(rng, k.N * k.C * k.H * k.W);
        var w = Random(rng, k.O * k.C * k.KH * k.KW);
        var dy = Random(rng, k.N * k.O * k.OH * k.OW);
        using var tx = Tensor.FromArray(x, k.N, k.C, k.H, k.W);
        using var tw = Tensor.FromArray(w, k.O, k.C, k.KH, k.KW);
        using var tdy = Tensor.FromArray(dy, k.N, k.O, k.OH, k.OW);
        var r = Conv2dReference.Backward(k, dy, x, w);

        using var dx = Tensor.Empty(Device.Cpu, DataType.Float32, k.N, k.C, k.H, k.W);
        using var dw = Tensor.Empty(Device.Cpu, DataType.Float32, k.O, k.C, k.KH, k.KW);
        using var db = Tensor.Empty(Device.Cpu, DataType.Float32, k.O);
        dx.Fill(float.NaN);
        dw.Fill(float.NaN);
        db.Fill(float.NaN);
        Conv2d.Backward(tdy, tx, tw, dx, null, null, k.Options);
        AssertClose("dx only", r.Dx, r.DxScale, dx.ToArray<float>());
        Assert.All(dw.ToArray<float>(), v => Assert.True(float.IsNaN(v)));
        Conv2d.Backward(tdy, tx, tw, null, dw, db, k.Options);
        AssertClose("dw only", r.Dw, r.DwScale, dw.ToArray<float>());
        AssertClose("db only", r.Db, r.DbScale, db.ToArray<float>());

        using var g = Conv2d.Backward(tdy, tx, tw, withBias: false, k.Options, inputGradient: false);
        Assert.Null(g.Input);
        Assert.Null(g.Bias);
        AssertClose("dw", r.Dw, r.DwScale, g.Weight.ToArray<float>());

        // Forward into a caller tensor overwrites stale contents too.
        using var y = Tensor.Empty(Device.Cpu, DataType.Float32, k.N, k.O, k.OH, k.OW);
        y.Fill(float.NaN);
        Conv2d.Forward(tx, tw, null, y, k.Options);
        var (wantY, scaleY) = Conv2dReference.Forward(k, x, w, null);
        AssertClose("y", wantY, scaleY, y.ToArray<float>());
    }

    [Fact]
    public void EmptyBatch_GivesEmptyOutputAndZeroWeightGradients()
    {
        using var x = Tensor.Zeros(Device.Cpu, 0, 3, 5, 5);
        using var w = Tensor.FromArray(Enumerable.Repeat(1f, 2 * 3 * 9).ToArray(), 2, 3, 3, 3);
        using var b = Tensor.FromArray(new float[] { 1, 2 }, 2);
        var o = Conv2dOptions.Create(padding: 1);
        using var y = Conv2d.Forward(x, w, b, o);
        Assert.Equal([0, 2, 5, 5], y.Shape.ToArray());
        using var dy = Tensor.Zeros(Device.Cpu, 0, 2, 5, 5);
        using var dw = Tensor.Empty(Device.Cpu, DataType.Float32, 2, 3, 3, 3);
        using var db = Tensor.Empty(Device.Cpu, DataType.Float32, 2);
        dw.Fill(float.NaN);
        db.Fill(float.NaN);
        using var dx = Tensor.Zeros(Device.Cpu, 0, 3, 5, 5);
        Conv2d.Backward(dy, x, w, dx, dw, db, o);
        Assert.All(dw.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(db.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void NaNInInputPropagatesToItsReceptiveField()
    {
        var x = new float[1 * 1 * 5 * 5];
        x[12] = float.NaN; // centre
        using var tx = Tensor.FromArray(x, 1, 1, 5, 5);
        using var w = Tensor.FromArray(new float[9], 1, 1, 3, 3); // zero weights: NaN·0 is still NaN
        using var y = Conv2d.Forward(tx, w, null, Conv2dOptions.Create(padding: 1));
        var v = y.ToArray<float>();
        for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
        {
            bool inField = Math.Abs(i - 2) <= 1 && Math.Abs(j - 2) <= 1;
            Assert.Equal(inField, float.IsNaN(v[i * 5 + j]));
        }
    }

    [Fact]
    public void Validation_NamesTheParameter()
    {
        using var x = Tensor.Zeros(Device.Cpu, 1, 3, 8, 8);
        using var w = Tensor.Zeros(Device.Cpu, 4, 3, 3, 3);
        using var wBad = Tensor.Zeros(Device.Cpu, 4, 2, 3, 3);
        using var b = Tensor.Zeros(Device.Cpu, 4);
        using var bBad = Tensor.Zeros(Device.Cpu, 5);
        using var xi = Tensor.Zeros(Device.Cpu, DataType.Int64, 1, 3, 8, 8);
        using var x3 = Tensor.Zeros(Device.Cpu, 3, 8, 8);
        using var xSmall = Tensor.Zeros(Device.Cpu, 1, 3, 2, 2);
        var o = Conv2dOptions.Create();
        Assert.Equal("weight", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Forward(x, wBad, b, o)).ParamName);
        Assert.Equal("bias", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Forward(x, w, bBad, o)).ParamName);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Forward(xi, w, b, o)).ParamName);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Forward(x3, w, b, o)).ParamName);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Forward(xSmall, w, b, o)).ParamName);
        Assert.Equal("StrideH", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Forward(x, w, b, new Conv2dOptions(0, 1, 0, 0, 1, 1))).ParamName);
        Assert.Equal("PadW", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Forward(x, w, b, new Conv2dOptions(1, 1, 0, -1, 1, 1))).ParamName);
        Assert.Equal("DilationW", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Forward(x, w, b, new Conv2dOptions(1, 1, 0, 0, 1, 0))).ParamName);

        using var y = Tensor.Zeros(Device.Cpu, 1, 4, 6, 7);
        Assert.Equal("y", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Forward(x, w, b, y, o)).ParamName);
        using var dyBad = Tensor.Zeros(Device.Cpu, 1, 4, 6, 7);
        Assert.Equal("gradY", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Backward(dyBad, x, w, true, o)).ParamName);
        using var dy = Tensor.Zeros(Device.Cpu, 1, 4, 6, 6);
        using var dxBad = Tensor.Zeros(Device.Cpu, 1, 3, 8, 7);
        using var dwBad = Tensor.Zeros(Device.Cpu, 4, 3, 3, 2);
        Assert.Equal("gradX", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Backward(dy, x, w, dxBad, null, null, o)).ParamName);
        Assert.Equal("gradWeight", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Backward(dy, x, w, null, dwBad, null, o)).ParamName);
        Assert.Equal("gradBias", Assert.ThrowsAny<ArgumentException>(() => Conv2d.Backward(dy, x, w, null, null, bBad, o)).ParamName);
    }
}
