using System.Runtime.InteropServices;
using System.Text.Json;
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Detection.Tests.Model;
using GRcn.Detection.Variants;
using GRcn.Kernels.Serialization;

namespace GRcn.Detection.Tests.Data;

/// <summary>
/// End to end against PyTorch: a PNG or JPEG file decoded by <see cref="ImageFile"/> and prepared by
/// <see cref="Detector.Prepare"/> gives the tensor that torchvision's <c>read_image</c> +
/// <c>GeneralizedRCNNTransform</c> gives on the same file (fixtures in Data/Fixtures/golden, written by
/// <c>make_fixtures.py golden</c>).
/// </summary>
public sealed class DecodeGoldenTests
{
    /// <summary>
    /// Allowed error of the normalised tensor (values span about ±2.6). The engine resizes after it
    /// normalises and computes (v·s − mean)·(1/std) where torchvision normalises first as (v − mean)/std;
    /// bilinear weights sum to one, so the two differ only by float32 rounding.
    /// </summary>
    private const float Tolerance = 1e-4f;

    public static TheoryData<string> Cases() =>
    [
        "png_rgb_45x31_up", "png_grey_27x52_capped_down", "png_rgba_33x33_up",
        "jpg_rgb420_64x41_down", "jpg_progressive444_38x57_capped", "jpg_grey_50x23_up",
    ];

    [Theory]
    [MemberData(nameof(Cases))]
    public void DecodedAndPreparedImageMatchesTorchvision(string name)
    {
        var golden = SafeTensorsFile.Read(TestImages.Fixture("golden", name + ".safetensors"));
        var meta = golden.Metadata;
        int Meta(string key) => int.Parse(meta[key], System.Globalization.CultureInfo.InvariantCulture);

        // Decoding: read_image's uint8 pixels exactly (libpng; libjpeg-turbo, progressive and grey included).
        RgbImage image = ImageFile.Load(TestImages.Fixture("golden", meta["source"]));
        Assert.Equal((Meta("width"), Meta("height")), (image.Width, image.Height));
        ReadOnlySpan<float> decoded = Floats(golden, "decoded");
        int plane = image.Width * image.Height, decodeMismatches = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < plane; i++)
                if (image.Pixels[3 * i + c] != decoded[c * plane + i]) decodeMismatches++;
        Assert.Equal(0, decodeMismatches);

        // Preparation: the detector's resize rule, bilinear resize and normalisation with its default mean/std.
        var input = new InputSettings();
        Assert.Equal(JsonSerializer.Deserialize<float[]>(meta["mean"]), input.Mean);
        Assert.Equal(JsonSerializer.Deserialize<float[]>(meta["std"]), input.Std);
        var config = DetectorTests.Small("g-rcn");
        using var detector = Detector.Create(config with { Input = config.Input with { Mean = input.Mean, Std = input.Std } });
        detector.SetInputSize(Meta("min_size"), Meta("max_size"));
        PreparedImage prepared = detector.Prepare(image);
        Assert.Equal((Meta("out_width"), Meta("out_height")), (prepared.Width, prepared.Height));

        ReadOnlySpan<float> expected = Floats(golden, "image");
        Assert.Equal(expected.Length, prepared.Pixels.Length);
        float worst = 0;
        int worstAt = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            float d = Math.Abs(prepared.Pixels[i] - expected[i]);
            if (!(d <= worst)) (worst, worstAt) = (d, i);
        }
        Assert.True(worst <= Tolerance,
            $"{name}: largest difference {worst:G4} at element {worstAt} ({prepared.Pixels[worstAt]} vs {expected[worstAt]}), tolerance {Tolerance:G4}");
    }

    private static ReadOnlySpan<float> Floats(SafeTensorsFile file, string tensor)
    {
        Assert.Equal("F32", file.Info(tensor).DType);
        return MemoryMarshal.Cast<byte, float>(file.RawBytes(tensor));
    }
}
