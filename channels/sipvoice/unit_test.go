package sipvoice_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels/sipvoice"
	"warngate/warning"
)

// TestMain lets the test binary stand in for a synthesiser: run with
// SIPVOICE_FAKE_TTS set, it writes a 16 kHz stereo tone as long as the
// text it reads, to the file after -w, and counts its runs in the file
// SIPVOICE_FAKE_TTS names.
func TestMain(m *testing.M) {
	if count := os.Getenv("SIPVOICE_FAKE_TTS"); count != "" {
		os.Exit(fakeTTS(count))
	}
	os.Exit(m.Run())
}

func fakeTTS(count string) int {
	var out string
	for i, a := range os.Args {
		if a == "-w" && i+1 < len(os.Args) {
			out = os.Args[i+1]
		}
	}
	text, _ := readAll(os.Stdin)
	f, _ := os.OpenFile(count, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	fmt.Fprintln(f, text)
	f.Close()
	n := 16000 / 10 * len([]rune(text)) // a tenth of a second per character
	data := make([]int16, 2*n)
	for i := 0; i < n; i++ {
		v := int16(8000 * math.Sin(2*math.Pi*440*float64(i)/16000))
		data[2*i], data[2*i+1] = v, v
	}
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(36+4*n))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(2), uint32(16000), uint32(64000), uint16(4), uint16(16)} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, uint32(0x7fffffff)) // streamed: the size is not known
	binary.Write(&b, binary.LittleEndian, data)
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func readAll(f *os.File) (string, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(f)
	return b.String(), err
}

func TestOutcomeOfFinalResponses(t *testing.T) {
	tests := []struct {
		status int
		phrase string
		cause  int
		want   warning.CallOutcome
	}{
		{486, "Busy Here", 0, warning.CallBusy},
		{600, "Busy Everywhere", 0, warning.CallBusy},
		{486, "Rejected", 0, warning.CallRejected}, // a phone's reject button
		{486, "Busy Here", 21, warning.CallRejected},
		{603, "Decline", 0, warning.CallRejected},
		{480, "Temporarily Unavailable", 0, warning.CallNoAnswer},
		{408, "Request Timeout", 0, warning.CallNoAnswer},
		{487, "Request Terminated", 0, warning.CallNoAnswer},
		{480, "Temporarily Unavailable", 20, warning.CallUnreachable}, // subscriber absent: switched off
		{404, "Not Found", 0, warning.CallUnreachable},
		{484, "Address Incomplete", 0, warning.CallUnreachable},
		{604, "Does Not Exist Anywhere", 0, warning.CallUnreachable},
		{503, "Service Unavailable", 0, warning.CallFailed},
		{503, "Service Unavailable", 17, warning.CallBusy},
		{403, "Forbidden", 0, warning.CallFailed},
		{488, "Not Acceptable Here", 0, warning.CallFailed},
	}
	for _, tt := range tests {
		if got := sipvoice.Outcome(tt.status, tt.phrase, tt.cause); got != tt.want {
			t.Errorf("%d %s (Q.850 %d): %s, want %s", tt.status, tt.phrase, tt.cause, got, tt.want)
		}
	}
}

// tone is a sine of freq Hz at rate for d.
func tone(freq float64, rate int, d time.Duration) sipvoice.PCM {
	n := int(d.Seconds() * float64(rate))
	a := sipvoice.PCM{Rate: rate, Samples: make([]int16, n)}
	for i := range a.Samples {
		a.Samples[i] = int16(10000 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
	}
	return a
}

func rms(s []int16) float64 {
	var sum float64
	for _, v := range s {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(max(1, len(s))))
}

// at returns the amplitude of freq Hz in a (one bin of a DFT).
func at(a sipvoice.PCM, freq float64) float64 {
	var re, im float64
	for i, v := range a.Samples {
		p := 2 * math.Pi * freq * float64(i) / float64(a.Rate)
		re += float64(v) * math.Cos(p)
		im -= float64(v) * math.Sin(p)
	}
	return 2 * math.Hypot(re, im) / float64(len(a.Samples))
}

func TestResampleKeepsTheVoiceBandAndDropsWhatWouldFoldBack(t *testing.T) {
	speech := tone(1000, 22050, time.Second).Resample(sipvoice.Rate)
	if speech.Rate != 8000 || len(speech.Samples) != 8000 {
		t.Fatalf("resampled to %d samples at %d Hz", len(speech.Samples), speech.Rate)
	}
	if a := at(speech, 1000); a < 9500 || a > 10500 {
		t.Errorf("1 kHz comes out at amplitude %.0f, want about 10000", a)
	}
	// 6 kHz cannot be carried at 8 kHz: unfiltered it would fold back to 2 kHz.
	high := tone(6000, 22050, time.Second).Resample(sipvoice.Rate)
	if r := rms(high.Samples[100 : len(high.Samples)-100]); r > 150 {
		t.Errorf("6 kHz leaves an RMS of %.0f, want it filtered out", r)
	}
	if a := at(high, 2000); a > 100 {
		t.Errorf("6 kHz folds back to 2 kHz at %.0f", a)
	}
	same := tone(1000, 8000, 10*time.Millisecond)
	if got := same.Resample(8000); len(got.Samples) != len(same.Samples) || got.Samples[7] != same.Samples[7] {
		t.Error("8 kHz audio changed by resampling to 8 kHz")
	}
}

func TestReadWAV(t *testing.T) {
	a := tone(440, 8000, 50*time.Millisecond)
	got, err := sipvoice.ReadWAV(a.WAV())
	if err != nil || got.Rate != 8000 || len(got.Samples) != len(a.Samples) || got.Samples[10] != a.Samples[10] {
		t.Fatalf("round trip: %d samples at %d Hz, %v", len(got.Samples), got.Rate, err)
	}
	for _, bad := range [][]byte{nil, []byte("RIFF\x00\x00\x00\x00WAVEjunk"), []byte("ID3 not a wav file")} {
		if _, err := sipvoice.ReadWAV(bad); err == nil {
			t.Errorf("%q read as WAV", bad)
		}
	}
}

func TestSynthRunsOncePerTextAndResamples(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	t.Setenv("SIPVOICE_FAKE_TTS", count)
	s, err := sipvoice.NewSynth([]string{os.Args[0], "-w", "{wav}"}, filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	paths := make([]string, 8)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.WAV(ctx, "暴雨红色预警")
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		}()
	}
	wg.Wait()
	other, _ := s.WAV(ctx, "该预警已解除")
	again, _ := s.WAV(ctx, "暴雨红色预警")
	runs, _ := os.ReadFile(count)
	if n := strings.Count(string(runs), "\n"); n != 2 {
		t.Errorf("the synthesiser ran %d times for two texts:\n%s", n, runs)
	}
	if again != paths[0] || other == again || paths[7] != paths[0] {
		t.Errorf("files %v, %s, %s", paths, other, again)
	}
	b, _ := os.ReadFile(again)
	pcm, err := sipvoice.ReadWAV(b)
	if err != nil || pcm.Rate != 8000 || pcm.Duration() < 0.55 || pcm.Duration() > 0.65 {
		t.Errorf("kept audio: %.2f s at %d Hz, %v", pcm.Duration(), pcm.Rate, err)
	}
	if _, err := sipvoice.NewSynth([]string{"espeak-ng", "-v", "cmn"}, dir); err == nil || !strings.Contains(err.Error(), "{wav}") {
		t.Errorf("a command without {wav}: %v", err)
	}
	broken, _ := sipvoice.NewSynth([]string{"false", "{wav}"}, dir)
	if _, err := broken.WAV(ctx, "x"); err == nil || !strings.Contains(err.Error(), "tts: false") {
		t.Errorf("a failing synthesiser: %v", err)
	}
}

func TestCheckNamesEveryBadSetting(t *testing.T) {
	t.Setenv("SIP_PASSWORD", "")
	_, _, err := sipvoice.Check(sipvoice.Config{
		Trunk: "", Transport: "sctp", Listen: "nowhere", RTPPorts: "10-5", DialPrefix: "9#", CallerID: "duty",
		Password: "${SIP_PASSWORD}", Lines: 0, RingTimeout: time.Second, KeyTimeout: time.Hour, Plays: 9, MaxCall: time.Second,
	}, "sip")
	want := []string{"sip.trunk", "sip.transport", "sip.listen", "sip.rtp_ports", "sip.dial_prefix", "sip.caller_id",
		"sip.password", "sip.lines", "sip.ring_timeout", "sip.key_timeout", "sip.plays", "sip.max_call"}
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w+":") {
			t.Errorf("no problem named for %s in\n%v", w, err)
		}
	}
	cfg, pw, err := sipvoice.Check(sipvoice.Config{Trunk: "10.20.0.5", Lines: 30, Username: "warngate", Password: "s3cret-pw",
		TTSCommand: []string{os.Args[0], "-w", "{wav}"}}, "sip")
	if err != nil || pw != "s3cret-pw" || cfg.RingTimeout != sipvoice.DefaultRingTimeout || cfg.Plays != 2 || cfg.Transport != "udp" {
		t.Errorf("defaults: %+v %v", cfg, err)
	}
	if s := fmt.Sprintf("%v %+v", cfg, cfg); strings.Contains(s, "s3cret-pw") {
		t.Errorf("the password shows: %s", s)
	}
	_, _, err = sipvoice.Check(sipvoice.Config{Trunk: "10.20.0.5", Lines: 30, Password: "x"}, "sip")
	if err == nil || !strings.Contains(err.Error(), "sip.username: required with a password") {
		t.Errorf("password without user: %v", err)
	}
	_, _, err = sipvoice.Check(sipvoice.Config{Trunk: "10.20.0.5", Lines: 30, TTSCommand: []string{"no-such-synthesiser", "{wav}"}}, "sip")
	if err == nil || !strings.Contains(err.Error(), "sip.tts_command: no-such-synthesiser is not installed") {
		t.Errorf("a synthesiser not installed: %v", err)
	}
	_, _, err = sipvoice.Check(sipvoice.Config{Trunk: "10.20.0.5", Lines: 30, TTSCommand: []string{"espeak-ng"}}, "sip")
	if err == nil || !strings.Contains(err.Error(), "sip.tts_command: no argument holds {wav}") {
		t.Errorf("a synthesiser writing nowhere: %v", err)
	}
}
