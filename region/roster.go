package region

import (
	"fmt"
	"slices"
	"strings"

	"warngate/warning"
)

// Role is what a person is in the warning chain.
type Role string

// Roles, from county officials down to residents.
const (
	CountyLeader   Role = "county_leader"   // 县级领导
	CountyDuty     Role = "county_duty"     // 县级值班人员
	TownshipLeader Role = "township_leader" // 乡镇分管领导
	TownshipDuty   Role = "township_duty"   // 乡镇值班人员
	VillageOfficer Role = "village_officer" // 村（社区）干部
	InfoOfficer    Role = "info_officer"    // 信息员
	GridWorker     Role = "grid_worker"     // 网格员
	Resident       Role = "resident"        // 居民
)

var roles = []Role{CountyLeader, CountyDuty, TownshipLeader, TownshipDuty, VillageOfficer, InfoOfficer, GridWorker, Resident}

// ParseRole checks a role name: the code (grid_worker) or the Chinese name
// operators write in their sheets (网格员).
func ParseRole(s string) (Role, error) {
	if r := Role(s); slices.Contains(roles, r) {
		return r, nil
	}
	for _, r := range roles {
		if sameName(s, r.Chinese()) {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q: use one of %s", s, joinNames(roles))
}

// sameName compares a name typed into a sheet with one of ours, whatever
// the width of its brackets: 村(社区)干部 is 村（社区）干部.
func sameName(typed, ours string) bool {
	return strings.NewReplacer("(", "（", ")", "）").Replace(typed) == ours
}

// Chinese returns the role as operators name it, e.g. 网格员.
func (r Role) Chinese() string {
	switch r {
	case CountyLeader:
		return "县级领导"
	case CountyDuty:
		return "县级值班人员"
	case TownshipLeader:
		return "乡镇分管领导"
	case TownshipDuty:
		return "乡镇值班人员"
	case VillageOfficer:
		return "村（社区）干部"
	case InfoOfficer:
		return "信息员"
	case GridWorker:
		return "网格员"
	case Resident:
		return "居民"
	}
	return string(r)
}

// Audience returns the audience policy addresses the role as, or "" for an
// unknown role.
func (r Role) Audience() warning.Audience {
	switch r {
	case CountyLeader, CountyDuty:
		return warning.CountyOfficials
	case TownshipLeader, TownshipDuty:
		return warning.TownshipOfficials
	case VillageOfficer, InfoOfficer, GridWorker:
		return warning.VillageOfficials
	case Resident:
		return warning.Residents
	}
	return ""
}

// Person is someone warngate can reach: an official who must confirm receipt,
// or a resident.
type Person struct {
	ID           string // unique in the roster; no '/' or whitespace, as it travels in delivery refs
	Name         string
	Phone        string // 11-digit mainland mobile number without +86, or ""
	WeChatOpenID string // openid under the bureau's official account, or ""
	WeComUserID  string // 企业微信 userid, or ""
	Role         Role
	Division     string // 12-digit code of the division the person belongs to
}

// DeviceKind says what a device shows or plays.
type DeviceKind string

// Device kinds.
const (
	Loudspeaker DeviceKind = "loudspeaker" // 应急广播 loudspeaker
	Screen      DeviceKind = "screen"      // outdoor LED screen
)

var deviceKinds = []DeviceKind{Loudspeaker, Screen}

// ParseDeviceKind checks a device kind: the code (loudspeaker) or the
// Chinese name (应急广播; also 广播, 显示屏).
func ParseDeviceKind(s string) (DeviceKind, error) {
	if k := DeviceKind(s); slices.Contains(deviceKinds, k) {
		return k, nil
	}
	switch s {
	case "应急广播", "广播", "大喇叭":
		return Loudspeaker, nil
	case "户外显示屏", "显示屏", "电子屏", "LED屏":
		return Screen, nil
	}
	return "", fmt.Errorf("unknown kind %q: use loudspeaker or screen", s)
}

// Chinese returns the device kind as operators name it, e.g. 应急广播.
func (k DeviceKind) Chinese() string {
	switch k {
	case Loudspeaker:
		return "应急广播"
	case Screen:
		return "户外显示屏"
	}
	return string(k)
}

// Device is a loudspeaker or screen driven through a vendor platform.
type Device struct {
	ID       string // unique in the roster; no '/' or whitespace
	Name     string
	Kind     DeviceKind
	Division string // 12-digit code of the division where the device stands
	Platform string // the device's id on the vendor platform
}

// HouseholdCategory says why a household must be reached by hand.
type HouseholdCategory string

// Household categories.
const (
	ElderlyAlone HouseholdCategory = "elderly_alone" // 独居老人
	DangerZone   HouseholdCategory = "danger_zone"   // 危险区域住户
	NoPhone      HouseholdCategory = "no_phone"      // 无手机人员
	Disabled     HouseholdCategory = "disabled"      // 残障人员
)

var householdCategories = []HouseholdCategory{ElderlyAlone, DangerZone, NoPhone, Disabled}

// ParseHouseholdCategory checks a household category: the code
// (elderly_alone) or the Chinese name (独居老人).
func ParseHouseholdCategory(s string) (HouseholdCategory, error) {
	if c := HouseholdCategory(s); slices.Contains(householdCategories, c) {
		return c, nil
	}
	for _, c := range householdCategories {
		if sameName(s, c.Chinese()) {
			return c, nil
		}
	}
	return "", fmt.Errorf("unknown category %q: use one of %s", s, joinNames(householdCategories))
}

// Chinese returns the category as grid workers read it, e.g. 独居老人.
func (c HouseholdCategory) Chinese() string {
	switch c {
	case ElderlyAlone:
		return "独居老人"
	case DangerZone:
		return "危险区域住户"
	case NoPhone:
		return "无手机人员"
	case Disabled:
		return "残障人员"
	}
	return string(c)
}

// Household is a household that a grid worker warns door to door.
type Household struct {
	ID         string // unique in the roster; no '/' or whitespace
	Head       string // 户主
	Address    string
	Phone      string // 11-digit mainland mobile number, or "" when the household has none
	Category   HouseholdCategory
	Division   string // 12-digit code of the household's village
	GridWorker string // Person.ID of the grid worker who visits the household
}

// Counts sums what a subtree of divisions holds.
type Counts struct {
	Officials       int `json:"officials"`        // people whose role's audience is official
	Residents       int `json:"residents"`        // people with role resident
	WeChatFollowers int `json:"wechat_followers"` // people, officials included, with a WeChat openid
	Loudspeakers    int `json:"loudspeakers"`
	Screens         int `json:"screens"`
	Households      int `json:"households"`
}

func (c Counts) add(o Counts) Counts {
	return Counts{
		Officials:       c.Officials + o.Officials,
		Residents:       c.Residents + o.Residents,
		WeChatFollowers: c.WeChatFollowers + o.WeChatFollowers,
		Loudspeakers:    c.Loudspeakers + o.Loudspeakers,
		Screens:         c.Screens + o.Screens,
		Households:      c.Households + o.Households,
	}
}

// Roster is who and what can be reached in each division of a tree. It is
// read-only once built and safe for concurrent use. Unknown codes hold
// nothing.
type Roster interface {
	// People calls fn for each person whose Division is exactly code (not its
	// subtree), in a stable order, until fn returns false.
	People(code string, fn func(Person) bool)
	// Devices calls fn for each device whose Division is exactly code, in a
	// stable order, until fn returns false.
	Devices(code string, fn func(Device) bool)
	// Households calls fn for each household whose Division is exactly code,
	// in a stable order, until fn returns false.
	Households(code string, fn func(Household) bool)
	// Counts sums the subtree rooted at code.
	Counts(code string) Counts
	// Person finds one person by ID: anyone in a loaded roster, officials
	// and residents (by decoding the ID) in a generated one.
	Person(id string) (Person, bool)
	// ByPhone finds the person with an 11-digit phone number; when several
	// share it, officials come first. It serves replies by SMS.
	ByPhone(phone string) (Person, bool)
	// Household finds one household by ID.
	Household(id string) (Household, bool)
}

func joinNames[S ~string](names []S) string {
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(n))
	}
	return b.String()
}
