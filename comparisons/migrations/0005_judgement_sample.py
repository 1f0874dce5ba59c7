# A judge call may score repeat n of each column (pass^k): the sample joins the unique key.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('comparisons', '0004_repeats'),
    ]

    operations = [
        migrations.AddField(
            model_name='judgement',
            name='sample',
            field=models.PositiveSmallIntegerField(default=0, help_text='0: the voted answers; n: repeat n of each column (scored for pass^k, never voted).'),
        ),
        migrations.RemoveConstraint(
            model_name='judgement',
            name='judgement_judging_turn_order',
        ),
        migrations.AddConstraint(
            model_name='judgement',
            constraint=models.UniqueConstraint(fields=('judging', 'turn', 'sample', 'first', 'second'), name='judgement_judging_turn_sample_order'),
        ),
        migrations.AlterModelOptions(
            name='judgement',
            options={'ordering': ['judging_id', 'turn', 'sample', 'first', 'second']},
        ),
    ]
