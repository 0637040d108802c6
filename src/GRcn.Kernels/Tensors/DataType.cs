namespace GRcn.Kernels;

/// <summary>Element type of a <see cref="Tensor"/>.</summary>
public enum DataType
{
    /// <summary>IEEE-754 single precision; activations, weights, boxes.</summary>
    Float32,
    /// <summary>Signed 64-bit integer; indices (NMS keep lists, batch indices, pooling argmax).</summary>
    Int64,
}

/// <summary>Size and name helpers for <see cref="DataType"/>.</summary>
public static class DataTypeExtensions
{
    /// <summary>Bytes per element.</summary>
    public static int SizeInBytes(this DataType type) => type switch
    {
        DataType.Float32 => 4,
        DataType.Int64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown data type"),
    };

    internal static DataType Of<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DataType.Float32;
        if (typeof(T) == typeof(long)) return DataType.Int64;
        throw new NotSupportedException($"element type {typeof(T).Name} has no tensor data type; use float or long");
    }
}
