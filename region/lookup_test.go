package region_test

import (
	"strings"
	"testing"

	"warngate/region"
)

func TestLookupByPhoneAndHousehold(t *testing.T) {
	tree := region.Kunming()
	demo := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 3, HouseholdsPerVillage: 4})
	loaded, err := region.LoadRoster(tree,
		strings.NewReader("id,name,phone,wechat_openid,wecom_userid,role,division\np1,张三,13800000001,,,resident,530102001001\np2,李四,+8613800000001,,zs,village_officer,530102001001\np3,王五,13800000003,,,grid_worker,530102001001\n"),
		nil,
		strings.NewReader("id,head,address,phone,category,division,grid_worker\nh-1,赵六,一号,,elderly_alone,530102001001,p3\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]region.Roster{"demo": demo, "loaded": loaded} {
		t.Run(name, func(t *testing.T) {
			var official, resident region.Person
			var household region.Household
			r.People("530102001001", func(p region.Person) bool {
				if p.Role.Audience().Official() && official.ID == "" {
					official = p
				}
				if p.Role == region.Resident && resident.ID == "" {
					resident = p
				}
				return true
			})
			r.Households("530102001001", func(h region.Household) bool { household = h; return false })
			if got, ok := r.ByPhone(official.Phone); !ok || got.ID != official.ID {
				t.Errorf("ByPhone(official %s) = %v, %v", official.Phone, got.ID, ok)
			}
			if name == "demo" {
				if got, ok := r.ByPhone(resident.Phone); !ok || got.ID != resident.ID {
					t.Errorf("ByPhone(resident) = %v, %v", got.ID, ok)
				}
			}
			if got, ok := r.Household(household.ID); !ok || got != household {
				t.Errorf("Household(%s) = %+v, %v", household.ID, got, ok)
			}
			if _, ok := r.ByPhone("13999999999"); ok {
				t.Error("an unknown number found someone")
			}
			if _, ok := r.Household("h-none"); ok {
				t.Error("an unknown household found")
			}
		})
	}
}
