from django.contrib import admin

from .models import Comparison, Tag, Variant, VariantRun, Vote, VoteRank


class VariantInline(admin.TabularInline):
    model = Variant
    extra = 0
    fields = ("position", "label", "agent", "config_key", "stopped_reason")
    readonly_fields = fields


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "session", "mode", "blind", "revealed_at", "created_at")
    list_filter = ("mode", "blind", "created_at")
    raw_id_fields = ("owner", "session", "branch_point", "source_run")
    inlines = [VariantInline]


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
    list_display = ("label", "comparison", "position", "config_key", "stopped_reason")
    raw_id_fields = ("comparison", "agent")


@admin.register(VariantRun)
class VariantRunAdmin(admin.ModelAdmin):
    list_display = ("variant", "turn", "run")
    raw_id_fields = ("variant", "run")


class VoteRankInline(admin.TabularInline):
    model = VoteRank
    extra = 0
    raw_id_fields = ("variant", "run")


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ("comparison", "turn", "choice", "created_at")
    list_filter = ("choice",)
    raw_id_fields = ("comparison",)
    inlines = [VoteRankInline]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "owner")
