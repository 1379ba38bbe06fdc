package channels

import "strings"

// MobilePhone returns addr as an 11-digit mainland mobile number, accepting
// a +86, 0086 or 86 prefix, and reports whether it is one.
func MobilePhone(addr string) (string, bool) {
	s := strings.TrimSpace(addr)
	for _, p := range []string{"+86", "0086", "86"} {
		if len(s) == len(p)+11 && strings.HasPrefix(s, p) {
			s = s[len(p):]
			break
		}
	}
	if len(s) != 11 || s[0] != '1' || !Digits(s) {
		return "", false
	}
	return s, true
}

// Digits reports whether s is one or more ASCII digits, as a service
// number or a provider's numeric id is.
func Digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// MaskPhone hides the middle of a phone number for logs: 138****0001.
func MaskPhone(phone string) string {
	if len(phone) < 7 {
		return "****"
	}
	return phone[:3] + "****" + phone[len(phone)-4:]
}

// MainlandNumber returns addr as a mainland number as dialled at home: an
// 11-digit mobile number, or a fixed line with its area code (0 and 9 to
// 11 more digits, e.g. 087163000000). It accepts a +86, 0086 or 86 prefix
// (a fixed line's 0 left out after it) and spaces or hyphens between the
// digits, and reports whether it is one.
func MainlandNumber(addr string) (string, bool) {
	s := strings.NewReplacer(" ", "", "-", "").Replace(strings.TrimSpace(addr))
	if m, ok := MobilePhone(s); ok {
		return m, true
	}
	for _, p := range []string{"+86", "0086", "86"} {
		if rest, ok := strings.CutPrefix(s, p); ok && len(rest) >= 9 && rest[0] != '0' && rest[0] != '1' {
			s = "0" + rest
			break
		}
	}
	if len(s) < 10 || len(s) > 12 || s[0] != '0' || s[1] == '0' || !Digits(s) {
		return "", false
	}
	return s, true
}
