// Package roster is the live roster: who and what warngate reaches, kept in
// Redis as numbered versions, changed by imports of the sheets bureaus keep
// (.xlsx or CSV) and by edits of one person, device or household, exported
// as .xlsx in the layout it imports. Each process serves any version as a
// region.Roster from memory, and follows the current one within a poll.
//
// A version is a manifest naming one chunk per (kind, division): the rows
// of that division, packed, stored once under the hash of their content. An
// edit of one person writes one chunk and a manifest that shares every other
// chunk, so a warning can keep the version it was planned with for as long
// as it is live (Keep) at the cost of the chunks that changed since.
//
// It checks rows with package region's checks, so a row is refused in the
// same words at start-up, in an upload and in a sheet, and reads sheets
// with internal/sheet. It must not decide who receives a warning (policy's
// job) nor audit (its callers know who acts); it imports nothing else of
// warngate.
package roster

import (
	"fmt"
	"slices"
	"strings"

	"warngate/internal/sheet"
	"warngate/region"
)

// Kind is what a roster sheet lists.
type Kind string

// Kinds.
const (
	People     Kind = "people"
	Devices    Kind = "devices"
	Households Kind = "households"
)

// Kinds in the order they are stored and checked: households name people.
var Kinds = []Kind{People, Devices, Households}

// ParseKind checks a kind name.
func ParseKind(s string) (Kind, error) {
	if k := Kind(s); slices.Contains(Kinds, k) {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q: use people, devices or households", s)
}

// tag is the kind's letter in manifest fields.
func (k Kind) tag() byte { return k[0] } // p, d, h

func (k Kind) index() int { return slices.Index(Kinds, k) }

// noun is one row of the kind, for messages.
func (k Kind) noun() string {
	switch k {
	case Devices:
		return "device"
	case Households:
		return "household"
	}
	return "person"
}

// SheetName is the worksheet the bureau's file of this kind calls it:
// 通讯录, 设备台账, 重点人员名单. Imports prefer a sheet of that name;
// exports use it.
func (k Kind) SheetName() string {
	switch k {
	case Devices:
		return "设备台账"
	case Households:
		return "重点人员名单"
	}
	return "通讯录"
}

// Columns are the kind's columns, as in the CSV layouts (region.PeopleColumns, …).
func (k Kind) Columns() []string {
	switch k {
	case Devices:
		return region.DeviceColumns
	case Households:
		return region.HouseholdColumns
	}
	return region.PeopleColumns
}

// aliases are the Chinese headers (and a few other spellings) each column
// is known by in bureaus' sheets; the first is the one exports write with
// header=zh and the samples use.
var aliases = map[Kind]map[string][]string{
	People: {
		"id": {"编号", "人员编号", "工号"}, "name": {"姓名"}, "phone": {"手机号", "手机号码", "联系电话", "电话"},
		"wechat_openid": {"微信openid", "openid", "公众号openid"}, "wecom_userid": {"企业微信账号", "企业微信userid", "企业微信"},
		"role": {"角色", "身份", "职责"}, "division": {"区划代码", "所属区划代码", "行政区划代码"},
	},
	Devices: {
		"id": {"编号", "设备编号"}, "name": {"名称", "设备名称"}, "kind": {"类型", "设备类型"},
		"division": {"区划代码", "所在区划代码", "行政区划代码"}, "platform_id": {"平台编号", "平台设备编号", "终端编号"},
	},
	Households: {
		"id": {"编号", "户编号"}, "head": {"户主", "户主姓名", "姓名"}, "address": {"地址", "住址", "家庭住址"},
		"phone": {"联系电话", "电话", "手机号"}, "category": {"类别", "人员类别", "户类别"},
		"division": {"区划代码", "所在村（社区）代码", "行政区划代码"}, "grid_worker": {"网格员编号", "网格员", "包保网格员编号"},
	},
}

// optional columns may be left out of a sheet: not every bureau has WeCom.
var optional = map[string]bool{"wechat_openid": true, "wecom_userid": true}

// sheetColumns are the kind's columns for package sheet.
func (k Kind) sheetColumns() []sheet.Column {
	cols := k.Columns()
	out := make([]sheet.Column, len(cols))
	for i, c := range cols {
		out[i] = sheet.Column{Name: c, Aliases: aliases[k][c], Optional: optional[c]}
	}
	return out
}

// ChineseHeader is the header exports write with header=zh, as the
// samples do.
func (k Kind) ChineseHeader() []string {
	cols := k.Columns()
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = aliases[k][c][0]
	}
	return out
}

// Rows are stored one a line, fields separated by tabs, without the
// division (the chunk's key says it). The row checks turn tabs and line
// breaks in values into spaces, so a value never breaks a row. Roles,
// kinds and categories are one character each.
const (
	fieldSep = '\t'
	rowSep   = '\n'
)

var (
	roleCodes     = []region.Role{region.CountyLeader, region.CountyDuty, region.TownshipLeader, region.TownshipDuty, region.VillageOfficer, region.InfoOfficer, region.GridWorker, region.Resident}
	kindCodes     = []region.DeviceKind{region.Loudspeaker, region.Screen}
	categoryCodes = []region.HouseholdCategory{region.ElderlyAlone, region.DangerZone, region.NoPhone, region.Disabled}
)

func code[T comparable](list []T, v T) byte { return byte('0' + slices.Index(list, v)) }

func decode[T any](list []T, b string) (T, bool) {
	var zero T
	if len(b) != 1 || b[0] < '0' || int(b[0]-'0') >= len(list) {
		return zero, false
	}
	return list[b[0]-'0'], true
}

func appendPerson(b []byte, p region.Person) []byte {
	b = fields(b, p.ID, p.Name, p.Phone, p.WeChatOpenID, p.WeComUserID)
	return append(b, fieldSep, code(roleCodes, p.Role), rowSep)
}

func appendDevice(b []byte, d region.Device) []byte {
	b = fields(b, d.ID, d.Name)
	b = append(b, fieldSep, code(kindCodes, d.Kind), fieldSep)
	return append(append(b, d.Platform...), rowSep)
}

func appendHousehold(b []byte, h region.Household) []byte {
	b = fields(b, h.ID, h.Head, h.Address, h.Phone)
	b = append(b, fieldSep, code(categoryCodes, h.Category), fieldSep)
	return append(append(b, h.GridWorker...), rowSep)
}

// fields appends values separated by tabs.
func fields(b []byte, values ...string) []byte {
	for i, v := range values {
		if i > 0 {
			b = append(b, fieldSep)
		}
		b = append(b, v...)
	}
	return b
}

// split cuts a stored row into its fields, without allocating the values:
// they share the chunk's memory.
func split(row string, out []string) bool {
	for i := range out {
		if i == len(out)-1 {
			if strings.IndexByte(row, fieldSep) >= 0 {
				return false
			}
			out[i] = row
			return true
		}
		f, rest, ok := strings.Cut(row, string(fieldSep))
		if !ok {
			return false
		}
		out[i], row = f, rest
	}
	return true
}

func decodePerson(row, division string) (region.Person, bool) {
	var f [6]string
	if !split(row, f[:]) {
		return region.Person{}, false
	}
	role, ok := decode(roleCodes, f[5])
	return region.Person{ID: f[0], Name: f[1], Phone: f[2], WeChatOpenID: f[3], WeComUserID: f[4], Role: role, Division: division}, ok
}

func decodeDevice(row, division string) (region.Device, bool) {
	var f [4]string
	if !split(row, f[:]) {
		return region.Device{}, false
	}
	kind, ok := decode(kindCodes, f[2])
	return region.Device{ID: f[0], Name: f[1], Kind: kind, Platform: f[3], Division: division}, ok
}

func decodeHousehold(row, division string) (region.Household, bool) {
	var f [6]string
	if !split(row, f[:]) {
		return region.Household{}, false
	}
	cat, ok := decode(categoryCodes, f[4])
	return region.Household{ID: f[0], Head: f[1], Address: f[2], Phone: f[3], Category: cat, GridWorker: f[5], Division: division}, ok
}

// rowID is a stored row's id: its first field.
func rowID(row string) string {
	if i := strings.IndexByte(row, fieldSep); i >= 0 {
		return row[:i]
	}
	return row
}

// fieldsOf returns a decoded row as the kind's columns, for exports.
func fieldsOf(k Kind, row, division string) ([]string, bool) {
	switch k {
	case People:
		p, ok := decodePerson(row, division)
		return []string{p.ID, p.Name, p.Phone, p.WeChatOpenID, p.WeComUserID, string(p.Role), p.Division}, ok
	case Devices:
		d, ok := decodeDevice(row, division)
		return []string{d.ID, d.Name, string(d.Kind), d.Division, d.Platform}, ok
	}
	h, ok := decodeHousehold(row, division)
	return []string{h.ID, h.Head, h.Address, h.Phone, string(h.Category), h.Division, h.GridWorker}, ok
}
