from django.db import migrations, models


def mark_comparison_agents(apps, schema_editor):
    """Agents made by comparisons were recognised by " · compare " in their names until now."""
    Agent = apps.get_model("memory", "Agent")
    Agent.objects.filter(name__contains=" · compare ").update(made_by_comparison=True)


class Migration(migrations.Migration):
    dependencies = [("memory", "0004_compaction_summary_encrypted")]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="made_by_comparison",
            field=models.BooleanField(
                default=False,
                help_text="Made by an A/B comparison for one of its variants (kept out of agent pickers).",
            ),
        ),
        migrations.RunPython(mark_comparison_agents, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="agent",
            name="compaction",
            field=models.JSONField(blank=True, default=dict, help_text="Compaction policy (see memory.policy)."),
        ),
    ]
