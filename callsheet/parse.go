package callsheet

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/xuri/excelize/v2"
)

// fold turns full-width forms (what a Chinese input method types: Ｙ, １８：３０)
// into ASCII, lower-cases, and trims.
func fold(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= '！' && r <= '～':
			return r - '！' + '!'
		case r == '\u3000':
			return ' '
		}
		return r
	}, s)
	return strings.ToLower(strings.TrimSpace(s))
}

var reachedWords = map[string]bool{
	"是": true, "y": true, "yes": true, "1": true, "true": true, "√": true, "✓": true, "✔": true,
	"否": false, "n": false, "no": false, "0": false, "false": false, "×": false, "x": false, "✗": false, "✘": false,
}

// parseReached reads 是/否, and the other ways people write yes and no.
// Excel's TRUE and FALSE come as 1 and 0.
func parseReached(s string) (reached, ok bool) {
	reached, ok = reachedWords[fold(s)]
	return reached, ok
}

// methodWords maps what grid workers write for a method to its name in
// Methods. The names and the API codes map to themselves.
var methodWords = func() map[string]string {
	m := map[string]string{
		"入户": "上门", "走访": "上门", "登门": "上门", "当面": "上门",
		"打电话": "电话", "电话通知": "电话", "手机": "电话",
		"大喇叭": "广播", "喇叭": "广播", "应急广播": "广播", "村广播": "广播",
		"其它": "其他",
	}
	for i, name := range Methods {
		m[name] = name
		m[methodCodes[i]] = name
	}
	return m
}()

// parseMethod returns the name in Methods of what a grid worker wrote.
func parseMethod(s string) (string, bool) {
	m, ok := methodWords[strings.ReplaceAll(fold(s), " ", "")]
	return m, ok
}

var (
	serialRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	// [[year-]month-day] hour:[minute[:second]], after normalising.
	timeRE = regexp.MustCompile(`^(?:(?:([0-9]{4})[-/.])?([0-9]{1,2})[-/.]([0-9]{1,2})[-/.]?\s*)?([0-9]{1,2}):([0-9]{1,2})?(?::([0-9]{1,2}))?$`)
	// Chinese date and time words, in the order they are replaced.
	timeWords = strings.NewReplacer("年", "-", "月", "-", "日", " ", "号", " ", "时", ":", "点", ":", "分", "", "秒", "", "半", "30")
	amPM      = []struct {
		word string
		pm   bool
	}{{"凌晨", false}, {"早上", false}, {"上午", false}, {"中午", false}, {"下午", true}, {"傍晚", true}, {"晚上", true}}
)

var errNoIssueDate = errors.New("the day is missing and this file does not say when the warning was issued: write the date too, e.g. 2026-07-01 18:30")

// parseTime reads what a grid worker wrote for when a household was reached,
// in +08:00. It accepts:
//
//   - the form Write prints, 2026-07-01 18:30, with - / or . between the
//     parts, seconds, a T, or Chinese words (7月2日 下午6点半);
//   - a date without a year (07-02 06:30), which is the first such day on or
//     after the warning's issue day;
//   - a time alone (18:30), which is on the warning's issue day, or on the
//     next day when that would be before the warning was issued: a grid
//     worker out at 01:30 after a 23:00 warning writes "01:30";
//   - an Excel date serial, which is what Excel stores for a date or time
//     typed into a cell (a serial below 1 is a time alone, as above).
//
// issued may be zero, when the file lost its hidden sheet; then a time
// without a year is an error.
func parseTime(raw string, issued time.Time, date1904 bool) (time.Time, error) {
	s := fold(raw)
	if s == "" {
		return time.Time{}, nil
	}
	if serialRE.MatchString(s) {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return time.Time{}, badTime(raw)
		}
		return fromSerial(v, raw, issued, date1904)
	}
	if t, err := time.Parse(time.RFC3339, strings.ToUpper(s)); err == nil {
		return t.In(cst), nil
	}
	pm := false
	for _, w := range amPM {
		if strings.Contains(s, w.word) {
			s, pm = strings.ReplaceAll(s, w.word, " "), w.pm
		}
	}
	s = strings.Join(strings.Fields(strings.ReplaceAll(timeWords.Replace(s), "t", " ")), " ")
	m := timeRE.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, badTime(raw)
	}
	num := func(i int) int { n, _ := strconv.Atoi(m[i]); return n }
	h, mi, sec := num(4), num(5), num(6)
	if pm && h < 12 {
		h += 12
	}
	if h > 23 || mi > 59 || sec > 59 {
		return time.Time{}, badTime(raw)
	}
	if m[3] == "" { // a time alone
		return onIssueDay(issued, h*3600+mi*60+sec)
	}
	y, mo, d := num(1), num(2), num(3)
	if m[1] == "" {
		if issued.IsZero() {
			return time.Time{}, errNoIssueDate
		}
		day := issued.In(cst)
		y = day.Year()
		if time.Date(y, time.Month(mo), d, 23, 59, 59, 0, cst).Before(day) {
			y++ // 01-01 after a warning issued on 31 December
		}
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, 0, cst)
	if t.Month() != time.Month(mo) || t.Day() != d {
		return time.Time{}, fmt.Errorf("%q is not a date: check the month and day", raw)
	}
	return t, nil
}

// fromSerial converts an Excel date serial, a wall-clock time in +08:00.
func fromSerial(v float64, raw string, issued time.Time, date1904 bool) (time.Time, error) {
	if v < 1 {
		return onIssueDay(issued, int(math.Round(v*86400)))
	}
	t, err := excelize.ExcelDateToTime(v, date1904)
	if err != nil {
		return time.Time{}, badTime(raw)
	}
	t = t.Round(time.Second)
	if t.Year() < 2000 || t.Year() > 2099 {
		return time.Time{}, badTime(raw)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, cst), nil
}

// onIssueDay places a time of day (in seconds) on the warning's issue day,
// or the next day when that would be before the warning was issued.
func onIssueDay(issued time.Time, secs int) (time.Time, error) {
	if issued.IsZero() {
		return time.Time{}, errNoIssueDate
	}
	day := issued.In(cst)
	t := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, secs, 0, cst)
	if t.Before(issued.Truncate(time.Minute)) {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

func badTime(raw string) error {
	return fmt.Errorf("%q is not a time: write it like 18:30, or 07-02 06:30 for another day", strings.TrimSpace(raw))
}
