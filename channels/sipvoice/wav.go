package sipvoice

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Rate is the sample rate of a phone call's audio (G.711): every prompt is
// played as 8 kHz, 16-bit, mono PCM.
const Rate = 8000

// PCM is mono 16-bit audio at a sample rate.
type PCM struct {
	Rate    int
	Samples []int16
}

// ReadWAV reads a PCM WAV file of 8 or 16 bits, mono or with several
// channels (mixed down to one), as a synthesiser writes it. A data chunk
// whose size says more than the file holds (a synthesiser that streamed
// its output) is read to the end of the file.
func ReadWAV(b []byte) (PCM, error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return PCM{}, errors.New("not a WAV file (no RIFF/WAVE header)")
	}
	var (
		format, channels, bits uint16
		rate                   uint32
		haveFmt                bool
	)
	for p := 12; p+8 <= len(b); {
		id, size := string(b[p:p+4]), int(binary.LittleEndian.Uint32(b[p+4:p+8]))
		body := b[p+8:]
		if size < 0 || size > len(body) {
			size = len(body)
		}
		body = body[:size]
		switch id {
		case "fmt ":
			if len(body) < 16 {
				return PCM{}, errors.New("WAV fmt chunk too short")
			}
			format = binary.LittleEndian.Uint16(body[0:2])
			channels = binary.LittleEndian.Uint16(body[2:4])
			rate = binary.LittleEndian.Uint32(body[4:8])
			bits = binary.LittleEndian.Uint16(body[14:16])
			haveFmt = true
		case "data":
			if !haveFmt {
				return PCM{}, errors.New("WAV data before its fmt chunk")
			}
			if format != 1 || (bits != 8 && bits != 16) || channels == 0 || rate == 0 {
				return PCM{}, fmt.Errorf("WAV of format %d, %d bits, %d channels at %d Hz: want PCM of 8 or 16 bits", format, bits, channels, rate)
			}
			return PCM{Rate: int(rate), Samples: mixDown(body, int(channels), int(bits))}, nil
		}
		p += 8 + size + size%2
	}
	return PCM{}, errors.New("WAV without a data chunk")
}

// mixDown turns interleaved frames into mono 16-bit samples.
func mixDown(data []byte, channels, bits int) []int16 {
	width := bits / 8
	frame := width * channels
	out := make([]int16, len(data)/frame)
	for i := range out {
		sum := 0
		for c := 0; c < channels; c++ {
			p := i*frame + c*width
			if bits == 8 {
				sum += (int(data[p]) - 128) << 8
			} else {
				sum += int(int16(binary.LittleEndian.Uint16(data[p:])))
			}
		}
		out[i] = int16(sum / channels)
	}
	return out
}

// WAV writes the audio as a 16-bit mono PCM WAV file.
func (a PCM) WAV() []byte {
	var buf bytes.Buffer
	n := uint32(len(a.Samples) * 2)
	buf.WriteString("RIFF")
	binary.Write(&buf, binary.LittleEndian, 36+n)
	buf.WriteString("WAVEfmt ")
	binary.Write(&buf, binary.LittleEndian, struct {
		Size                   uint32
		Format, Channels       uint16
		Rate, ByteRate         uint32
		BlockAlign, SampleBits uint16
	}{16, 1, 1, uint32(a.Rate), uint32(a.Rate * 2), 2, 16})
	buf.WriteString("data")
	binary.Write(&buf, binary.LittleEndian, n)
	binary.Write(&buf, binary.LittleEndian, a.Samples)
	return buf.Bytes()
}

// Duration returns how long the audio plays, in seconds.
func (a PCM) Duration() float64 { return float64(len(a.Samples)) / float64(a.Rate) }

// resampleZeros is how many zero crossings of the sinc each side of a
// sample the resampler sums: enough to keep speech clean at 8 kHz.
const resampleZeros = 16

// Resample returns the audio at rate, filtered so that nothing above the
// new Nyquist frequency folds back into the band (a windowed-sinc
// resampler with a Blackman window).
func (a PCM) Resample(rate int) PCM {
	if rate == a.Rate || len(a.Samples) == 0 {
		return PCM{Rate: rate, Samples: append([]int16(nil), a.Samples...)}
	}
	ratio := float64(rate) / float64(a.Rate)
	// The cutoff, as a fraction of the input rate: the lower Nyquist, a
	// little inside it for the filter's transition band.
	fc := 0.5 * math.Min(1, ratio) * 0.92
	half := float64(resampleZeros) / (2 * fc) // kernel half-width, in input samples
	out := make([]int16, int(float64(len(a.Samples))*ratio))
	for n := range out {
		x := float64(n) / ratio
		lo, hi := int(math.Ceil(x-half)), int(math.Floor(x+half))
		var sum, norm float64
		for k := max(lo, 0); k <= min(hi, len(a.Samples)-1); k++ {
			t := x - float64(k)
			w := 2 * fc * sinc(2*fc*t) * blackman(t/half)
			sum += w * float64(a.Samples[k])
			norm += w
		}
		if norm != 0 {
			sum /= norm
		}
		out[n] = int16(math.Max(math.MinInt16, math.Min(math.MaxInt16, math.Round(sum))))
	}
	return PCM{Rate: rate, Samples: out}
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// blackman is the Blackman window over [-1, 1].
func blackman(u float64) float64 {
	if u <= -1 || u >= 1 {
		return 0
	}
	p := math.Pi * (u + 1)
	return 0.42 - 0.5*math.Cos(p) + 0.08*math.Cos(2*p)
}
