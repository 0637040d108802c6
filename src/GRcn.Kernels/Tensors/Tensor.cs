// A dense, row-major (C order) tensor of float32 or int64 elements living on one device.
// Views made by Reshape share the memory (reference counted); Dispose hands the memory back
// to the device's caching allocator once no view uses it.
using System.Runtime.CompilerServices;
using System.Text;

namespace GRcn.Kernels;

/// <summary>
/// A dense row-major tensor of <see cref="DataType.Float32"/> or <see cref="DataType.Int64"/>
/// elements on a <see cref="Kernels.Device"/>.
/// </summary>
/// <remarks>
/// Tensors own device memory: dispose them (or use <c>using</c>) so the memory returns to
/// the device's cache at once; a tensor that is never disposed gives its memory back when it
/// is finalised. Host access (<see cref="AsSpan{T}"/>) exists for CPU tensors only; every
/// device supports <see cref="CopyFrom{T}(ReadOnlySpan{T})"/>, <see cref="CopyTo{T}(Span{T})"/>
/// and <see cref="ToArray{T}"/>.
/// </remarks>
public sealed class Tensor : IDisposable
{
    private readonly int[] _shape;
    private DeviceBuffer? _buffer;

    private Tensor(DeviceBuffer buffer, DataType type, int[] shape, long length)
    {
        _buffer = buffer;
        DataType = type;
        _shape = shape;
        Length = length;
    }

    /// <summary>Device that holds the elements.</summary>
    public Device Device => Buffer.Device;

    /// <summary>Element type.</summary>
    public DataType DataType { get; }

    /// <summary>Sizes of the dimensions, outermost first.</summary>
    public ReadOnlySpan<int> Shape => _shape;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>Number of elements (product of <see cref="Shape"/>).</summary>
    public long Length { get; }

    /// <summary>Whether <see cref="Dispose"/> has been called.</summary>
    public bool IsDisposed => _buffer is null;

    /// <summary>Size of dimension <paramref name="dim"/>; a negative index counts from the end.</summary>
    public int Dim(int dim) => _shape[dim < 0 ? dim + _shape.Length : dim];

    /// <summary>Shape as text, e.g. <c>(2, 3, 7, 7)</c>.</summary>
    public string ShapeString => FormatShape(_shape);

    internal DeviceBuffer Buffer => _buffer ?? throw new ObjectDisposedException(nameof(Tensor), "the tensor was disposed");

    internal long ByteCount => Length * DataType.SizeInBytes();

    /// <summary>Creates a tensor whose elements are uninitialised.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or the element count overflows.</exception>
    public static Tensor Empty(Device device, DataType type, params ReadOnlySpan<int> shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        long length = CheckedLength(shape, nameof(shape));
        var buffer = device.Allocate(length * type.SizeInBytes());
        return new Tensor(buffer, type, shape.ToArray(), length);
    }

    /// <summary>Creates a zero-filled tensor.</summary>
    public static Tensor Zeros(Device device, DataType type, params ReadOnlySpan<int> shape)
    {
        var t = Empty(device, type, shape);
        t.Clear();
        return t;
    }

    /// <summary>Creates a zero-filled float32 tensor.</summary>
    public static Tensor Zeros(Device device, params ReadOnlySpan<int> shape) => Zeros(device, DataType.Float32, shape);

    /// <summary>Creates a tensor holding a copy of <paramref name="data"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="data"/> does not have as many elements as <paramref name="shape"/>.</exception>
    public static Tensor FromSpan<T>(Device device, ReadOnlySpan<T> data, params ReadOnlySpan<int> shape) where T : unmanaged
    {
        var type = DataTypeExtensions.Of<T>();
        long length = CheckedLength(shape, nameof(shape));
        if (data.Length != length)
            throw new ArgumentException($"data has {data.Length} elements but shape {FormatShape(shape)} needs {length}", nameof(data));
        var t = Empty(device, type, shape);
        t.CopyFrom(data);
        return t;
    }

    /// <summary>Creates a CPU tensor holding a copy of <paramref name="data"/>.</summary>
    public static Tensor FromArray<T>(T[] data, params ReadOnlySpan<int> shape) where T : unmanaged =>
        FromSpan<T>(Device.Cpu, data, shape);

    /// <summary>Sets every element to zero.</summary>
    public void Clear() => Device.Clear(Buffer, 0, ByteCount);

    /// <summary>Sets every element of a float32 tensor to <paramref name="value"/>.</summary>
    public void Fill(float value)
    {
        RequireType(DataType.Float32);
        Device.Fill(Buffer, 0, Length, value);
    }

    /// <summary>The elements of a CPU tensor, for reading and writing in place.</summary>
    /// <exception cref="InvalidOperationException">The tensor is not on the CPU, or <typeparamref name="T"/> does not match <see cref="DataType"/>.</exception>
    public unsafe Span<T> AsSpan<T>() where T : unmanaged
    {
        RequireType(DataTypeExtensions.Of<T>());
        if (Device.Kind != DeviceKind.Cpu)
            throw new InvalidOperationException($"AsSpan needs a CPU tensor; this one is on {Device.Name}: use CopyTo or ToArray");
        if (Length > int.MaxValue)
            throw new InvalidOperationException($"tensor of {Length} elements is too large for a span");
        return new Span<T>((void*)Buffer.Pointer, (int)Length);
    }

    /// <summary>Copies <paramref name="source"/> into this tensor; lengths must match.</summary>
    public unsafe void CopyFrom<T>(ReadOnlySpan<T> source) where T : unmanaged
    {
        RequireType(DataTypeExtensions.Of<T>());
        if (source.Length != Length)
            throw new ArgumentException($"source has {source.Length} elements, tensor {ShapeString} has {Length}", nameof(source));
        fixed (T* p = source) Device.CopyFromHost(p, Buffer, 0, ByteCount);
    }

    /// <summary>Copies this tensor into <paramref name="destination"/>; lengths must match.</summary>
    public unsafe void CopyTo<T>(Span<T> destination) where T : unmanaged
    {
        RequireType(DataTypeExtensions.Of<T>());
        if (destination.Length != Length)
            throw new ArgumentException($"destination has {destination.Length} elements, tensor {ShapeString} has {Length}", nameof(destination));
        fixed (T* p = destination) Device.CopyToHost(Buffer, 0, p, ByteCount);
    }

    /// <summary>Copies the elements of another tensor of the same type and length on the same device.</summary>
    public void CopyFrom(Tensor source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.DataType != DataType || source.Length != Length || source.Device != Device)
            throw new ArgumentException(
                $"source is {source.DataType} {source.ShapeString} on {source.Device.Name}; expected {DataType} with {Length} elements on {Device.Name}",
                nameof(source));
        Device.Copy(source.Buffer, 0, Buffer, 0, ByteCount);
    }

    /// <summary>
    /// Copies <paramref name="count"/> elements of <paramref name="source"/> starting at
    /// <paramref name="sourceStart"/> into this tensor at <paramref name="start"/> (flat, row-major
    /// element offsets; same type and device): slicing and concatenation along dimension 0.
    /// </summary>
    public void CopyFrom(Tensor source, long sourceStart, long start, long count)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.DataType != DataType || source.Device != Device)
            throw new ArgumentException($"source is {source.DataType} on {source.Device.Name}; expected {DataType} on {Device.Name}", nameof(source));
        if (count < 0 || sourceStart < 0 || start < 0 || sourceStart + count > source.Length || start + count > Length)
            throw new ArgumentOutOfRangeException(nameof(count),
                $"range [{sourceStart}, {sourceStart + count}) of source {source.ShapeString} into [{start}, {start + count}) of {ShapeString} is out of bounds");
        if (count == 0) return;
        long size = DataType.SizeInBytes();
        Device.Copy(source.Buffer, sourceStart * size, Buffer, start * size, count * size);
    }

    /// <summary>A new array with a copy of the elements.</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        var a = new T[checked((int)Length)];
        CopyTo<T>(a);
        return a;
    }

    /// <summary>A copy of this tensor on <paramref name="device"/>.</summary>
    public unsafe Tensor To(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var t = Empty(device, DataType, _shape);
        if (device == Device) t.CopyFrom(this);
        else if (Device.Kind == DeviceKind.Cpu) device.CopyFromHost((void*)Buffer.Pointer, t.Buffer, 0, ByteCount);
        else if (device.Kind == DeviceKind.Cpu) Device.CopyToHost(Buffer, 0, (void*)t.Buffer.Pointer, ByteCount);
        else
        {
            using var host = To(Kernels.Device.Cpu);
            t.Dispose();
            return host.To(device);
        }
        return t;
    }

    /// <summary>A copy of this tensor (same device, new memory).</summary>
    public Tensor Clone() => To(Device);

    /// <summary>
    /// A view with another shape over the same memory (the element count must not change;
    /// one dimension may be -1 and is inferred). Dispose the view too; memory is released
    /// when the last of the tensor and its views is disposed.
    /// </summary>
    public Tensor Reshape(params ReadOnlySpan<int> shape)
    {
        int[] s = shape.ToArray();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException("only one dimension can be -1", nameof(shape));
                infer = i;
            }
            else if (s[i] < 0) throw new ArgumentException($"dimension {i} is {s[i]}; sizes must be non-negative", nameof(shape));
            else known *= s[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || Length % known != 0)
                throw new ArgumentException($"cannot reshape {ShapeString} ({Length} elements) to {FormatShape(s)}", nameof(shape));
            s[infer] = (int)(Length / known);
            known *= s[infer];
        }
        if (known != Length)
            throw new ArgumentException($"cannot reshape {ShapeString} ({Length} elements) to {FormatShape(s)}", nameof(shape));
        return new Tensor(Buffer.AddRef(), DataType, s, Length);
    }

    /// <summary>Releases this tensor's hold on its memory.</summary>
    public void Dispose()
    {
        var b = Interlocked.Exchange(ref _buffer, null);
        b?.Release();
    }

    /// <inheritdoc/>
    public override string ToString() => $"Tensor({DataType}, {ShapeString}, {(IsDisposed ? "disposed" : Device.Name)})";

    /// <summary>Formats a shape as <c>(a, b, c)</c>.</summary>
    public static string FormatShape(ReadOnlySpan<int> shape)
    {
        var sb = new StringBuilder("(");
        for (int i = 0; i < shape.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(shape[i]);
        }
        if (shape.Length == 1) sb.Append(',');
        return sb.Append(')').ToString();
    }

    internal void RequireType(DataType type)
    {
        if (DataType != type)
            throw new InvalidOperationException($"tensor is {DataType}, not {type}");
    }

    /// <summary>Unchecked host pointer of a CPU tensor, for kernels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal unsafe T* Ptr<T>() where T : unmanaged => (T*)Buffer.Pointer;

    private static long CheckedLength(ReadOnlySpan<int> shape, string paramName)
    {
        long n = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 0) throw new ArgumentException($"dimension {i} of {FormatShape(shape)} is negative", paramName);
            n *= shape[i];
            if (n > (1L << 40)) throw new ArgumentException($"shape {FormatShape(shape)} has too many elements", paramName);
        }
        return n;
    }
}
