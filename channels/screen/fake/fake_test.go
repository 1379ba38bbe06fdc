package fake_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"warngate/channels/screen/fake"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func post(t *testing.T, f http.Handler, path, body, secret, nonce string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest("POST", path, strings.NewReader(body))
	cur := strconv.FormatInt(time.Now().Unix(), 10)
	r.Header.Set("AppKey", "AK")
	r.Header.Set("Nonce", nonce)
	r.Header.Set("CurTime", cur)
	r.Header.Set("CheckSum", fake.CheckSum(secret, nonce, cur))
	w := httptest.NewRecorder()
	f.ServeHTTP(w, r)
	var m map[string]any
	json.Unmarshal(w.Body.Bytes(), &m)
	return w.Code, m
}

const insert = `{"playerIds":["p1","p2","p9"],"attribute":{"spotsType":"IMMEDIATELY","normalProgramStatus":"PAUSE","duration":20000},
"page":{"name":"a","widgets":[{"type":"ARCH_TEXT","layout":{"x":"0%","y":"0%","width":"100%","height":"100%"},"lines":[{"textAttributes":[{"content":"x","fontSize":20,"textColor":"#FFFFFF"}]}]}]}}`

func TestProtocol(t *testing.T) {
	f := fake.New(fake.Config{AppKey: "AK", AppSecret: "AS", Players: []string{"p1", "p2"}, Offline: []string{"p2"}}, nil, quiet())
	defer f.Close()
	code, m := post(t, f, "/v2/player/emergency-program/page", insert, "AS", "n1")
	if code != 200 || !reflect.DeepEqual(m["success"], []any{"p1"}) || !reflect.DeepEqual(m["fail"], []any{"p2"}) {
		t.Fatalf("%d %v", code, m)
	}
	if code, _ := post(t, f, "/v2/player/emergency-program/page", insert, "wrong", "n2"); code != 401 {
		t.Errorf("bad CheckSum: %d", code)
	}
	if code, _ := post(t, f, "/v2/player/emergency-program/page", insert, "AS", "n1"); code != 401 {
		t.Errorf("reused nonce: %d", code)
	}
	for i, body := range []string{
		strings.Replace(insert, `"spotsType":"IMMEDIATELY"`, `"spotsType":"NOW"`, 1),
		strings.Replace(insert, `"duration":20000`, `"duration":0`, 1),
		strings.Replace(insert, `"name":"a"`, `"name":""`, 1),
		`{"playerIds":[],"attribute":{}}`,
	} {
		if code, m := post(t, f, "/v2/player/emergency-program/page", body, "AS", "v"+strconv.Itoa(i)); code != 400 {
			t.Errorf("invalid body %d: %d %v", i, code, m)
		}
	}
	if code, m := post(t, f, "/v2/player/emergency-program/cancel", `{"playerIds":["p1"]}`, "AS", "c1"); code != 200 || !reflect.DeepEqual(m["success"], []any{"p1"}) {
		t.Errorf("cancel %d %v", code, m)
	}
}
