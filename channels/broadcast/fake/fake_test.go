package fake_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"warngate/channels/broadcast/fake"
)

const (
	platform = "P-1"
	key      = "k-0123456789abcdef"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func post(t *testing.T, f http.Handler, body, k, nonce string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest("POST", "/api/ebm", strings.NewReader(body))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	r.Header.Set("X-EB-Platform", platform)
	r.Header.Set("X-EB-Timestamp", ts)
	r.Header.Set("X-EB-Nonce", nonce)
	r.Header.Set("X-EB-Signature", fake.Sign(k, "POST", "/api/ebm", platform, ts, nonce, []byte(body)))
	w := httptest.NewRecorder()
	f.ServeHTTP(w, r)
	var m map[string]any
	json.Unmarshal(w.Body.Bytes(), &m)
	return w.Code, m
}

const good = `{"EBDVersion":"1.0","EBDID":"R1","EBDType":"EBM","SRC":{"EBRID":"P-1"},"EBDTime":"2026-07-01 10:00:00",
"EBM":{"EBMVersion":"1.0","MsgBasicInfo":{"MsgType":1,"SenderName":"昆明市应急管理局","SentTime":"2026-07-01 10:00:00","EventType":"11B03","Severity":1,"StartTime":"2026-07-01 10:00:00","EndTime":"2026-07-01 13:00:00"},
"MsgContent":{"LanguageCode":"zho","MsgTitle":"t","MsgDesc":"d","AreaCode":"530102001001"},"Dispatch":{"EBRID":["D1","D9"]}},"Params":{"PlayTimes":2,"Priority":1,"TTS":true}}`

func TestProtocol(t *testing.T) {
	f := fake.New(fake.Config{PlatformID: platform, Key: key, Devices: []string{"D1"}, Record: true}, nil, quiet())
	defer f.Close()
	code, m := post(t, f, good, key, "a")
	if code != 200 || m["ResultCode"] != 1.0 || m["EBMID"] == "" {
		t.Fatalf("%d %v", code, m)
	}
	inv := m["Invalid"].([]any)[0].(map[string]any)
	if inv["EBRID"] != "D9" || inv["Reason"] != "设备不存在" {
		t.Errorf("invalid %v", inv)
	}
	if code, m := post(t, f, good, "wrong-key-0123456789", "b"); code != 401 || m["ResultCode"] != 4.0 {
		t.Errorf("bad signature: %d %v", code, m)
	}
	if code, m := post(t, f, good, key, "a"); code != 401 || !strings.Contains(m["ResultDesc"].(string), "nonce") {
		t.Errorf("replayed nonce: %d %v", code, m)
	}
	for field, body := range map[string]string{
		"MsgBasicInfo.Severity":  strings.Replace(good, `"Severity":1`, `"Severity":7`, 1),
		"MsgBasicInfo.EndTime":   strings.Replace(good, `"EndTime":"2026-07-01 13:00:00"`, `"EndTime":"2026-07-01 09:00:00"`, 1),
		"SRC.EBRID":              strings.Replace(good, `"SRC":{"EBRID":"P-1"}`, `"SRC":{"EBRID":"P-2"}`, 1),
		"Dispatch.EBRID":         strings.Replace(good, `"Dispatch":{"EBRID":["D1","D9"]}`, `"Dispatch":{"EBRID":[]}`, 1),
		"Params.PlayTimes":       strings.Replace(good, `"PlayTimes":2`, `"PlayTimes":0`, 1),
		"MsgContent.AreaCode":    strings.Replace(good, `530102001001`, `5301`, 1),
		"MsgBasicInfo.EventType": strings.Replace(good, `11B03`, `rain`, 1),
	} {
		code, m := post(t, f, body, key, field)
		if code != 200 || m["ResultCode"] != 3.0 || !strings.Contains(m["ResultDesc"].(string), field) {
			t.Errorf("%s: %d %v", field, code, m)
		}
	}
	id := f.Messages()[0].EBMID
	cancel := `{"EBDVersion":"1.0","EBDID":"R2","EBDType":"EBM","SRC":{"EBRID":"P-1"},"EBDTime":"2026-07-01 10:00:00","EBM":{"EBMVersion":"1.0","RelatedEBM":{"EBMID":"` + id + `"},"MsgBasicInfo":{"MsgType":2,"SenderName":"s","SentTime":"2026-07-01 10:00:00"}}}`
	if code, m := post(t, f, cancel, key, "c"); code != 200 || m["ResultCode"] != 1.0 {
		t.Errorf("cancel %d %v", code, m)
	}
	f.FailNextStatus(503)
	if code, _ := post(t, f, good, key, "d"); code != 503 {
		t.Errorf("injected %d", code)
	}
}
